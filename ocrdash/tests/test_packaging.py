"""An OCR host installs only the core dependencies: the agent must run with no Django at all.

A fresh virtualenv gets ``pip install .`` (no extras), as the README tells for a real host,
and then runs the agent's command line on a small model folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)


def test_the_agent_installs_and_runs_without_the_dashboards_dependencies(tmp_path):
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    # A copy of the tree: building in place would leave build/ and *.egg-info behind.
    source = tmp_path / "src"
    files = _run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for rel in filter(None, files.stdout.split("\0")):
        src = ROOT / rel
        if src.is_file():
            dst = source / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    install = _run([str(python), "-m", "pip", "install", "--quiet", str(source)])
    assert install.returncode == 0, install.stderr[-3000:]

    no_django = _run([str(python), "-c", "import django"])
    assert no_django.returncode != 0, "the core install must not pull in Django"
    imports = _run(
        [str(python), "-c", "import workers.tasks, workers.celery_app, workers.__main__"], cwd=tmp_path
    )
    assert imports.returncode == 0, imports.stderr

    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v2.gguf").write_bytes(b"current" * 1000)
    (models / "old_fr_ocr_v1.bin").write_bytes(b"stale" * 1000)
    audit = _run(
        [
            *(str(python), "-m", "workers", "audit", "--models-dir", str(models), "--dry-run", "--json"),
            *("--state-dir", str(tmp_path / "state")),
        ],
        cwd=tmp_path,
    )
    assert audit.returncode == 0, audit.stderr
    document = json.loads(audit.stdout)
    status = {f["path"]: f["status"] for f in document["files"]}
    assert status == {"en_ocr_v2.gguf": "CURRENT", "old_fr_ocr_v1.bin": "OLD"}
    assert document["freed"] is True
    assert (models / "old_fr_ocr_v1.bin").exists(), "a dry run moves nothing"
