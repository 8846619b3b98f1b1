"""Input names and globs: where a job reads, and the one rule for turning an
input's (untrusted) name into an output's.

Shared by every job: a dataset's split is decided by a source's path below
its input glob's fixed directory (`pipelines.patches`), and the batch jobs
write each output at its input's relative path (`batch_jobs.output_path`).
"""
from __future__ import annotations

import logging
import re

from apache_beam.io.filesystems import FileSystems

from pipelines.dead_letters import Rejected


def input_pattern(value: str, files: str = "**") -> str:
    """A job's `--input` as the glob it means: a directory is every file under it.

    Beam matches a bare directory's path as a single file, which then fails
    to read ("Is a directory"). So a value without wildcards that ends in
    '/' or has files below it (on `gs://`, objects under that prefix) becomes
    `<directory>/<files>`, e.g. `bits/**.jpg`; the job logs the glob it used.
    """
    if re.search(r"[*?\[]", value):
        return value
    directory = value.rstrip("/")
    if value.endswith("/") or FileSystems.match([f"{directory}/**"], limits=[1])[0].metadata_list:
        pattern = f"{directory}/{files}"
        logging.getLogger(__name__).info("--input %s is a directory: reading %s", value, pattern)
        return pattern
    return value


def input_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard, with a final '/'."""
    fixed = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return fixed[:fixed.rfind("/") + 1]


# Room in a 255-byte file name for the longest suffix and temporary name we add.
MAX_NAME_BYTES = 200


def relative_path(path: str, base: str) -> str:
    """`path` below `base`, as a name that stays below any directory it is
    joined to: the one rule for turning an input's (untrusted) name into an
    output's. An object in `gs://` may be named `a/../../etc/x`, which a local
    filesystem would resolve outside the output directory; such names, and
    any that a filesystem would read differently from the object store
    (empty, `.` or `..` parts, control characters, parts too long for a file
    name), are `Rejected`."""
    if not path.startswith(base):
        raise Rejected(f"unsafe name: {path!r} is not below the input directory {base!r}")
    relative = path[len(base):]
    for part in relative.split("/"):
        problem = _name_problem(part)
        if problem:
            raise Rejected(f"unsafe name: {relative!r} {problem}; it could be written "
                           "outside the output directory or collide with another")
    return relative


def _name_problem(part: str) -> str | None:
    """Why one path part cannot name a file under the output, or None."""
    if part in ("", ".", ".."):
        return f"has a {part!r} part"
    if not part.isprintable():
        return "has a control or invisible character"
    try:
        encoded = part.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode"
    if len(encoded) > MAX_NAME_BYTES:
        return f"has a part longer than {MAX_NAME_BYTES} bytes"
    return None
