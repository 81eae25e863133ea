"""The lock (issue 23): what `make setup` installs is exactly uv.lock's exports, the
image's runtime is a subset of the same pins, and `make lock-check` says `make lock`
when pyproject.toml moves without a re-lock."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
VENV_BIN = Path(sys.executable).parent


def locked(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Every pin of an export that applies here: name -> (version, hashes)."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    text = (REQUIREMENTS / name).read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if not re.match(r"[A-Za-z0-9]", block):
            continue
        requirement = Requirement(block.split(" \\")[0])
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
        assert hashes, f"{name}: {requirement.name} has no hash"
        (version,) = (spec.version for spec in requirement.specifier if spec.operator == "==")
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = (version, hashes)
    return pins


def test_the_venv_holds_exactly_the_lock() -> None:
    frozen = subprocess.run(
        [VENV_BIN / "python", "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([^=\s#]+)==(\S+)$", frozen, re.MULTILINE)
    }
    # pip comes with the interpreter's venv and does the installing; it is not a dependency.
    installed.pop(canonicalize_name("pip"), None)
    expected = {name: version for name, (version, _) in locked("dev.txt").items()}
    assert installed == expected


def test_the_runtime_and_build_locks_are_subsets_of_the_dev_lock() -> None:
    dev = locked("dev.txt")
    for name in ("runtime.txt", "build.txt"):
        for package, pin in locked(name).items():
            assert dev.get(package) == pin, f"{name}: {package} differs from dev.txt"
    assert set(locked("build.txt")) == {"setuptools"}


def test_the_build_backend_is_the_locked_one() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (version, _) = locked("build.txt")["setuptools"]
    assert pyproject["build-system"]["requires"] == [f"setuptools=={version}"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What scripts/lock.sh --check reads, in a directory of its own."""
    for name in ("pyproject.toml", "uv.lock", "requirements", "scripts/lock.sh"):
        source = ROOT / name
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    return tmp_path


def lock_check(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/lock.sh", "--check"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lock_check_passes_on_the_committed_lock(checkout: Path) -> None:
    result = lock_check(checkout)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        ("pyproject.toml", '"msgspec>=0.18"', '"msgspec>=0.18", "idna>=3"', "uv.lock does not"),
        ("pyproject.toml", '"pytest>=8"', '"pytest>=8.0.1"', "uv.lock does not"),
        ("pyproject.toml", 'requires = ["setuptools==', 'requires = ["setuptools>=1,==', "[build"),
        ("requirements/runtime.txt", "aiohttp==", "aiohttp>=", "requirements/runtime.txt"),
        ("requirements/dev.txt", "--hash=sha256:", "--hash=sha256:0", "requirements/dev.txt"),
    ],
)
def test_lock_check_names_make_lock_in_one_line(
    checkout: Path, file: str, old: str, new: str, says: str
) -> None:
    path = checkout / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = lock_check(checkout)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lock-check: ")
    assert says in lines[0]
    assert lines[0].endswith("run 'make lock'")
