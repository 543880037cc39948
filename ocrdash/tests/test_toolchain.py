"""Every install is the locked one: the lock matches pyproject.toml, and each way in uses it.

The ranges in pyproject.toml let the agent's wheel co-install on an OCR host; the exact versions
the suite passes with are the ones in uv.lock. A lock that falls behind pyproject.toml, or an
install path that resolves afresh, would test one set of packages and ship another.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UV_VERSION = "0.13.9"


def _uv() -> str:
    """The uv that make install used: the pinned version on PATH, or the one in .uv/."""
    on_path = shutil.which("uv")
    if on_path:
        out = subprocess.run([on_path, "--version"], capture_output=True, text=True).stdout
        if out.split()[1:2] == [UV_VERSION]:
            return on_path
    bootstrapped = ROOT / ".uv" / "bin" / "uv"
    assert bootstrapped.exists(), f"no uv {UV_VERSION}: run make install"
    return str(bootstrapped)


def test_the_lock_matches_pyproject():
    result = subprocess.run([_uv(), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"uv.lock is out of date, run `uv lock`:\n{result.stderr}"


def test_the_agents_dependencies_are_ranges_not_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [dep for dep in project["dependencies"] if "==" in dep]
    assert not pinned, f"exact pins keep the agent's wheel from co-installing: {pinned}"
    assert all(re.search(r">=\s*\d", dep) for dep in project["dependencies"])


def test_make_install_ci_and_the_image_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "sync --locked" in makefile
    assert re.search(r"^\$\(BIN\)/\.installed: pyproject\.toml uv\.lock", makefile, re.M)
    assert f"UV_VERSION := {UV_VERSION}" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make install" in ci and "pip install -e" not in ci
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml uv.lock" in dockerfile
    assert f"pip install uv=={UV_VERSION}" in dockerfile
    assert "uv export --frozen" in dockerfile and "--require-hashes" in dockerfile
