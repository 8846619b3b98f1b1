"""The containers in `docker/` against `setup.py`: the Python and the
libraries the package requires are the ones the images hold.

No container engine runs here, so the images are not built; what can go
wrong when they are (a base image of another Python, a TensorFlow or Beam
installed beside the package's own pins, a package that is not installed at
all) is read off the Dockerfiles and the package's installed metadata.
"""
import ast
import pathlib
import re
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILES = {"trainer": REPO / "docker" / "trainer.Dockerfile",
               "dataflow": REPO / "docker" / "dataflow.Dockerfile"}
PACKAGE = metadata.metadata("sandwich-compression")


def _requirement(name: str, extra: str | None = None) -> Requirement:
    for line in PACKAGE.get_all("Requires-Dist"):
        requirement = Requirement(line)
        in_extra = requirement.marker and requirement.marker.evaluate({"extra": extra or ""})
        if requirement.name == name and (requirement.marker is None if extra is None else in_extra):
            return requirement
    raise AssertionError(f"setup.py does not require {name} (extra {extra})")


def _instructions(dockerfile: pathlib.Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def instruction(dockerfile, name: str) -> str:
    """The argument of the Dockerfile's one `name` instruction."""
    [argument] = [arg for op, arg in _instructions(dockerfile) if op == name]
    return argument


def base_image(dockerfile) -> str:
    return instruction(dockerfile, "FROM")


def pip_install_target(dockerfile) -> str:
    """What the Dockerfile's one `pip install` step installs."""
    [install] = [arg for op, arg in _instructions(dockerfile) if op == "RUN" and "pip install" in arg]
    return install.split()[-1].strip('"')


def python_of(base: str) -> str:
    match = re.fullmatch(r"python:(3\.\d+)-slim|apache/beam_python(3\.\d+)_sdk:[\d.]+", base)
    assert match, f"unknown base image {base}"
    return next(v for v in match.groups() if v)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_image_has_the_python_the_package_requires(name):
    python = python_of(base_image(DOCKERFILES[name]))
    assert f"{python}.0" in SpecifierSet(PACKAGE["Requires-Python"]), (name, python)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_image_installs_the_package_and_nothing_beside_it(name):
    """Installing the repository (`.`) is what brings TensorFlow, Beam and the
    rest at setup.py's pins; a second pip step could install other versions."""
    target = pip_install_target(DOCKERFILES[name])
    assert re.fullmatch(r"\.(\$\{EXTRAS:\+\[\$EXTRAS\]\})?", target), target
    copied = {arg.split()[0] for op, arg in _instructions(DOCKERFILES[name]) if op == "COPY"}
    # Every package setup.py installs is copied in beside it.
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests"}
    assert {"sandwich", "codec", "pipelines", "trainer"} <= packages
    assert {"setup.py", *packages} <= copied


def test_dataflow_base_image_has_the_beam_the_package_requires():
    """Pinned exactly: a job submitted with another Beam than its workers'
    fails at start-up or, worse, runs with mismatched coders."""
    beam = base_image(DOCKERFILES["dataflow"]).rsplit(":", 1)[1]
    assert beam in _requirement("apache-beam").specifier
    assert str(_requirement("apache-beam").specifier) == f"=={beam}"


def _third_party_imports(package: str) -> set[str]:
    names = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_workers_install_only_what_the_package_imports():
    """tensorflow-datasets (and its dozens of dependencies) only reads
    datasets back in the tests: the test extra, not every worker."""
    imported = set().union(*(_third_party_imports(p) for p in ("sandwich", "codec", "pipelines",
                                                               "trainer")))
    assert "tensorflow_datasets" not in imported
    assert "tensorflow_datasets" in _third_party_imports("tests")
    with pytest.raises(AssertionError):
        _requirement("tensorflow-datasets")
    assert _requirement("tensorflow-datasets", extra="test")


def test_gpu_image_has_the_same_tensorflow():
    """The trainer image's `cuda` extra must not pull another TensorFlow."""
    cuda = _requirement("tensorflow", extra="cuda")
    assert cuda.extras == {"and-cuda"}
    assert cuda.specifier == _requirement("tensorflow").specifier
    assert metadata.version("tensorflow") in cuda.specifier


def test_trainer_image_runs_the_trainer():
    assert instruction(DOCKERFILES["trainer"], "ENTRYPOINT") == '["sandwich-train"]'
    assert metadata.entry_points(group="console_scripts")["sandwich-train"].value == "trainer.task:main"
