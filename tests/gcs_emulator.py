"""A Cloud Storage emulator on 127.0.0.1 for end-to-end `gs://` tests.

`StorageEmulator` runs `gcp-storage-emulator` in its own process on a free
port and yields the environment that points every client at it: the
google-cloud-storage client (and so Beam's GCS filesystem, in the test
process and in Beam's worker processes alike) honours `STORAGE_EMULATOR_HOST`.

Beam looks for default credentials, retrying for about half a minute, before
it falls back to anonymous access, and google-auth probes a GCE metadata
server. `NO_GCE_CHECK` stops the probe, and `GOOGLE_APPLICATION_CREDENTIALS`
names a file of static-token credentials (the emulator accepts any token), so
the lookup succeeds at once and nothing leaves the machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _anonymous_credentials(path: str) -> str:
    with open(path, "w") as f:
        json.dump({"type": "external_account_authorized_user",
                   "token": "emulator", "expiry": "2999-01-01T00:00:00Z",
                   "audience": "//iam.googleapis.com/emulator"}, f)
    return path


@contextlib.contextmanager
def storage_emulator(workdir: str, timeout: float = 30.0):
    """Starts the emulator and yields the environment variables that reach it."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"storage emulator did not start on port {port}")
            time.sleep(0.1)
        yield {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
            "NO_GCE_CHECK": "true",
            "GOOGLE_APPLICATION_CREDENTIALS": _anonymous_credentials(
                os.path.join(workdir, "anonymous_credentials.json")),
            "GOOGLE_CLOUD_PROJECT": "test-project",
        }
    finally:
        process.terminate()
        process.wait(timeout=10)
