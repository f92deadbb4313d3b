"""The package as it ships: the wheel and the source distribution that ``python -m build`` makes
hold the licence, their metadata say what fastmlp is, and ``twine check`` accepts both.

Built without build isolation (``--no-isolation``: the ``release`` extra installs build, twine and
setuptools >= 77 into the environment), so the test needs no network."""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    """(wheel, sdist) built from this checkout."""
    for package in ("build", "twine"):
        pytest.importorskip(package, reason=f'{package} comes with the release extra: pip install -e ".[release]"')
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.skip('the build needs setuptools >= 77 (PEP 639 licence metadata): pip install -e ".[release]"')
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_the_licence_and_the_metadata(distributions):
    wheel, _ = distributions
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(name.rsplit("/", 1)[0] for name in names if name.endswith(".dist-info/METADATA"))
        assert archive.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert "fastmlp/data/notmnist/LICENSE" in names  # the sample's own licence, beside its files
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    assert metadata["License-Expression"] == "MIT"
    assert "LICENSE" in metadata.get_all("License-File")
    assert metadata["Author"] == "the fastmlp developers"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().startswith("# fastmlp\n")  # the README is the long description
    classifiers = metadata.get_all("Classifier")
    for expected in (
        "Programming Language :: Python :: 3.10",
        "Environment :: GPU :: NVIDIA CUDA :: 12",
        "Typing :: Typed",
    ):
        assert expected in classifiers
    assert metadata["Home-page"] is None and metadata.get_all("Project-URL") is None  # no address yet


def test_the_sdist_holds_the_licence(distributions):
    _, sdist = distributions
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "fastmlp/data/notmnist/LICENSE", "README.md", "pyproject.toml"} <= names


def test_twine_accepts_both(distributions):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, distributions)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2
