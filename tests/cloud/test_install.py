"""The install as documented works: files readable by the service, unit docs that exist, a clean checkout.

The documented ``sudo install`` commands are run for real, under a temporary
root instead of ``/``, and the results are checked as the service user would
meet them (a process with another uid and only the service's group).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.licenses import canonicalize_license_expression

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534  # uid and gid of nobody / nogroup
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="installing files for other users needs root (CI runs as root)")


def _shell_lines(doc: Path) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture
def fake_root() -> Iterator[Path]:
    """A directory others can enter (pytest's tmp_path is private to root), standing in for /."""
    path = Path(tempfile.mkdtemp(prefix="twinedge-root-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _run_documented_installs(doc: Path, root: Path, group: str) -> None:
    """Every ``sudo install`` line of the guide, with / moved to ``root`` and the service group renamed."""
    lines = [line.removeprefix("sudo ") for line in _shell_lines(doc) if line.startswith("sudo install ")]
    assert lines, f"{doc.name} documents no install commands"
    for line in lines:
        line = re.sub(r"(?<=\s)/(?!dev/)", f"{root}/", line)  # every path outside the checkout moves
        line = re.sub(r"(-g|-o) twin(edge|cloud)\b", rf"\1 {group}", line)
        subprocess.run(line, shell=True, cwd=ROOT, check=True, timeout=30)


def _readable_by(path: Path, gid: int) -> bool:
    """Whether a process of user nobody, in group ``gid`` only, can read ``path``."""
    done = subprocess.run(["cat", str(path)], user=NOBODY, group=gid, extra_groups=[], capture_output=True,
                          timeout=10)
    return done.returncode == 0


@as_root
def test_the_cloud_config_is_readable_by_the_service_group_and_no_one_else(fake_root: Path) -> None:
    doc = ROOT / "docs" / "cloud.md"
    lines = _shell_lines(doc)
    useradd = next(i for i, line in enumerate(lines) if "useradd" in line and "twincloud" in line)
    first_use = next((i for i, line in enumerate(lines) if "-g twincloud" in line), None)
    assert first_use is not None, "nothing is given to the service's group"
    assert useradd < first_use, "the group must exist before files are given to it"
    _run_documented_installs(doc, fake_root, "nogroup")
    config = fake_root / "etc" / "twincloud" / "cloud.toml"
    assert _readable_by(config, NOBODY), "the service user cannot read its config"
    assert not _readable_by(config, 1), "the config is readable by everyone (group daemon here)"


@as_root
@pytest.mark.parametrize(("unit", "guide"), [("twincloud.service", "cloud.md"),
                                             ("twinedge.service", "operator-guide.md")])
def test_the_units_documentation_exists_after_the_documented_install(fake_root: Path, unit: str,
                                                                     guide: str) -> None:
    text = (ROOT / "systemd" / unit).read_text(encoding="utf-8")
    urls = [u for line in re.findall(r"^Documentation=(.*)$", text, re.MULTILINE) for u in line.split()]
    assert urls and all(u.startswith("file:///") for u in urls), urls  # no internet on a plant network
    _run_documented_installs(ROOT / "docs" / guide, fake_root, "nogroup")
    for url in urls:
        installed = fake_root / url.removeprefix("file:///")
        assert installed.is_file() and installed.read_text(encoding="utf-8").startswith("# "), url


def test_make_clean_removes_build_output_and_keeps_the_sources(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    made = ["build/lib/cloud/app.py", "dist/twinedge-0.1.0-py3-none-any.whl", "twinedge.egg-info/PKG-INFO",
            "cloud/__pycache__/app.cpython-311.pyc", "tests/cloud/__pycache__/x.pyc", ".venv/bin/python",
            "run/edge.toml", ".pytest_cache/README.md"]
    kept = ["cloud/app.py", "tests/cloud/test_x.py", "docs/cloud.md", ".git/HEAD"]
    for name in made + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    # Without the variables of a make that runs the suite: `make test VENV=...` must not reach this clean.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    subprocess.run(["make", "-s", "clean"], cwd=tmp_path, check=True, timeout=30, capture_output=True, env=env)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(["Makefile", *kept])
    assert not list(tmp_path.rglob("__pycache__")) and not (tmp_path / "build").exists()


def test_the_licence_is_an_spdx_expression_that_setuptools_reads_without_warnings() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    license_ = project["project"]["license"]
    assert isinstance(license_, str) and canonicalize_license_expression(license_) == license_
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    setuptools = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools == ["setuptools>=77"]  # the first release that reads an SPDX string (PEP 639)


def _fake_bin(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def _system_deps(tmp_path: Path, python: str) -> subprocess.CompletedProcess[str]:
    """deploy/scripts/system-deps.sh with a stand-in python3 and apt-get (which only records its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _fake_bin(bin_dir, "python3", python)
    _fake_bin(bin_dir, "apt-get", f'echo "$@" >> {tmp_path / "apt.log"}')
    _fake_bin(bin_dir, "sudo", 'exec "$@"')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("PYTHON", None)
    return subprocess.run(["bash", str(ROOT / "deploy" / "scripts" / "system-deps.sh")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_system_deps_refuses_a_python_older_than_3_11(tmp_path: Path) -> None:
    old = 'case "$2" in *sys.exit*) exit 1;; *) echo 3.9;; esac'  # python3 -c '...': Python 3.9
    done = _system_deps(tmp_path, old)
    assert done.returncode == 1
    assert "needs Python 3.11 or newer; python3 is Python 3.9" in done.stderr
    assert not (tmp_path / "apt.log").exists()  # nothing installed for a Python that cannot run it


def test_system_deps_installs_venv_where_debian_left_it_out(tmp_path: Path) -> None:
    # Python 3.11 whose ensurepip is missing, as on Debian without python3.11-venv
    debian = 'case "$2" in *ensurepip*) exit 1;; *sys.exit*) exit 0;; *) echo 3.11;; esac'
    done = _system_deps(tmp_path, debian)
    assert done.returncode == 0, done.stderr
    installs = [line.split() for line in (tmp_path / "apt.log").read_text().splitlines()
                if line.startswith("install ")]
    assert installs and "python3.11-venv" in installs[0]
