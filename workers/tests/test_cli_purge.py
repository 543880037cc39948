"""``python -m workers purge``: empty the quarantine without any dashboard, on real files."""

from __future__ import annotations

import json
from pathlib import Path

from workers.prune import QUARANTINE_DIR
from workers.tests.conftest import write
from workers.tests.test_cli_config import run_cli
from workers.tests.test_cli_restore import audit


def test_it_empties_the_quarantine_with_zero_days(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "en_ocr_v1.gguf", b"en")
    write(models_dir / "old_fr_ocr_v1.bin", b"f" * 5000)
    write(models_dir / "sub" / "old_de_ocr_v1.bin", b"d" * 3000)
    request_id = audit(models_dir, state_dir)

    done = run_cli(
        "purge",
        *("--models-dir", str(models_dir), "--older-than-days", "0", "--state-dir", str(state_dir)),
        "--json",
    )

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["purged_requests"] == [request_id]
    assert doc["bytes_purged"] == 8000 and doc["freed"] is True
    assert list((models_dir / QUARANTINE_DIR).iterdir()) == []
    assert (models_dir / "en_ocr_v1.gguf").read_bytes() == b"en"


def test_it_keeps_what_is_younger_than_the_retention(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"french")
    request_id = audit(models_dir, state_dir)

    done = run_cli("purge", "--models-dir", str(models_dir), "--state-dir", str(state_dir))

    assert done.returncode == 0, done.stderr
    assert "Nothing in quarantine older than 7 day(s)" in done.stdout
    assert (models_dir / QUARANTINE_DIR / request_id / "old_fr_ocr_v1.bin").read_bytes() == b"french"


def test_it_says_how_much_it_purged(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"f" * 2048)
    request_id = audit(models_dir, state_dir)

    done = run_cli(
        "purge",
        *("--models-dir", str(models_dir), "--older-than-days", "0", "--state-dir", str(state_dir)),
    )

    assert done.returncode == 0, done.stderr
    assert "Purged the quarantine of 1 request(s), 2.0 KiB:" in done.stdout
    assert f"  {request_id}" in done.stdout.splitlines()
    assert "Aspose resources freed." in done.stdout


def test_it_refuses_a_missing_model_folder(tmp_path: Path) -> None:
    done = run_cli("purge", "--models-dir", str(tmp_path / "absent"), "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_it_refuses_a_negative_retention(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"french")
    request_id = audit(models_dir, state_dir)

    done = run_cli(
        "purge",
        *("--models-dir", str(models_dir), "--older-than-days", "-1", "--state-dir", str(state_dir)),
    )

    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "0 or more" in done.stderr
    assert (models_dir / QUARANTINE_DIR / request_id / "old_fr_ocr_v1.bin").exists()
