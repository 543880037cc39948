"""``python -m workers restore``: undo an audit without any dashboard, on real files."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from workers.prune import QUARANTINE_DIR
from workers.tests.conftest import write
from workers.tests.test_cli_config import run_cli


def audit(models_dir: Path, state_dir: Path) -> str:
    """Run an audit that quarantines the OLD files; returns its request id."""
    done = run_cli("audit", "--models-dir", str(models_dir), "--state-dir", str(state_dir), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["request_id"]


def test_it_brings_back_what_an_audit_quarantined_byte_identical(models_dir: Path, state_dir: Path) -> None:
    old = os.urandom(70_000)
    write(models_dir / "en_ocr_v1.gguf", b"en")
    write(models_dir / "layout" / "old_table_v1.onnx", old)
    mtime = (models_dir / "layout" / "old_table_v1.onnx").stat().st_mtime_ns
    request_id = audit(models_dir, state_dir)
    assert not (models_dir / "layout" / "old_table_v1.onnx").exists()

    done = run_cli(
        "restore",
        *("--models-dir", str(models_dir), "--request-id", request_id, "--state-dir", str(state_dir)),
        "--json",
    )

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [(o["path"], o["outcome"]) for o in doc["outcomes"]] == [("layout/old_table_v1.onnx", "restored")]
    assert doc["restored"] == 1 and doc["freed"] is True
    restored = models_dir / "layout" / "old_table_v1.onnx"
    assert restored.read_bytes() == old
    assert restored.stat().st_mtime_ns == mtime
    assert not list((models_dir / QUARANTINE_DIR / request_id).rglob("*.onnx"))


def test_it_runs_the_command_the_audit_printed(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"french")
    done = run_cli("audit", "--models-dir", str(models_dir), "--state-dir", str(state_dir))
    assert done.returncode == 0, done.stderr
    printed = next(line for line in done.stdout.splitlines() if "workers restore" in line)
    argv = shlex.split(printed)[3:]  # after "python -m workers"

    done = run_cli(*argv, "--state-dir", str(state_dir))

    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout and "Restored 1 of 1 file(s)." in done.stdout
    assert "Aspose resources freed." in done.stdout
    assert (models_dir / "old_fr_ocr_v1.bin").read_bytes() == b"french"


def test_it_never_overwrites_a_file_that_came_back_meanwhile(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"first")
    request_id = audit(models_dir, state_dir)
    write(models_dir / "old_fr_ocr_v1.bin", b"downloaded again")

    done = run_cli(
        "restore",
        *("--models-dir", str(models_dir), "--request-id", request_id, "--state-dir", str(state_dir)),
    )

    assert done.returncode == 1
    assert "refused" in done.stdout and "not restored" in done.stderr
    assert (models_dir / "old_fr_ocr_v1.bin").read_bytes() == b"downloaded again"
    assert (models_dir / QUARANTINE_DIR / request_id / "old_fr_ocr_v1.bin").read_bytes() == b"first"


def test_a_second_restore_has_nothing_left_and_says_so(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"french")
    request_id = audit(models_dir, state_dir)
    args = ("--models-dir", str(models_dir), "--request-id", request_id, "--state-dir", str(state_dir))
    assert run_cli("restore", *args).returncode == 0

    done = run_cli("restore", *args)

    assert done.returncode == 1
    assert done.stderr.strip() == f"error: nothing left to restore for request id {request_id}"


def test_it_refuses_an_unknown_request_id_in_one_line(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"french")
    audit(models_dir, state_dir)

    done = run_cli(
        "restore",
        *("--models-dir", str(models_dir), "--request-id", "audit-nope", "--state-dir", str(state_dir)),
    )

    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown request id audit-nope" in done.stderr
    assert done.stdout == ""


def test_it_refuses_a_request_id_that_is_not_a_folder_name(models_dir: Path, state_dir: Path) -> None:
    done = run_cli(
        "restore",
        *("--models-dir", str(models_dir), "--request-id", "../etc", "--state-dir", str(state_dir)),
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not usable as a folder name" in done.stderr


def test_it_refuses_a_missing_model_folder(tmp_path: Path) -> None:
    done = run_cli(
        "restore",
        *("--models-dir", str(tmp_path / "absent"), "--request-id", "audit-1"),
        *("--state-dir", str(tmp_path / "s")),
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_audit_quarantines_and_restores_the_old_files_of_both_stores(
    models_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    ocr_dir = tmp_path / "aspose_data"
    write(models_dir / "en_ocr_v2.gguf", b"current llm")
    write(models_dir / "old_fr_ocr_v1.bin", b"old llm")
    write(ocr_dir / "english.OCR", b"current ocr")
    write(ocr_dir / "old_latin.OCR", b"old ocr")
    both = (
        "--models-dir",
        str(models_dir),
        "--ocr-resources-dir",
        str(ocr_dir),
        "--state-dir",
        str(state_dir),
    )

    done = run_cli("audit", *both, "--json")

    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    listed = {(f["store"], f["path"]): (f["status"], f["known_to_aspose"]) for f in doc["files"]}
    assert listed == {
        ("llm", "en_ocr_v2.gguf"): ("CURRENT", False),
        ("llm", "old_fr_ocr_v1.bin"): ("OLD", False),
        ("ocr", "english.OCR"): ("CURRENT", True),
        ("ocr", "old_latin.OCR"): ("OLD", True),
    }
    assert [s["store"] for s in doc["stores"]] == ["llm", "ocr"]
    request_id = doc["request_id"]
    assert (ocr_dir / QUARANTINE_DIR / request_id / "old_latin.OCR").read_bytes() == b"old ocr"
    assert (models_dir / QUARANTINE_DIR / request_id / "old_fr_ocr_v1.bin").read_bytes() == b"old llm"
    assert doc["bytes_reclaimed"] == len(b"old llm") + len(b"old ocr") and doc["freed"] is True

    text = run_cli("restore", *both, "--request-id", request_id)

    assert text.returncode == 0, text.stderr
    assert "[ocr] old_latin.OCR" in text.stdout and "Restored 2 of 2 file(s)." in text.stdout
    assert (ocr_dir / "old_latin.OCR").read_bytes() == b"old ocr"
    assert (models_dir / "old_fr_ocr_v1.bin").read_bytes() == b"old llm"


def test_audit_refuses_a_missing_ocr_folder(models_dir: Path, state_dir: Path, tmp_path: Path) -> None:
    done = run_cli(
        "audit",
        "--models-dir",
        str(models_dir),
        "--ocr-resources-dir",
        str(tmp_path / "nope"),
        "--state-dir",
        str(state_dir),
    )
    assert done.returncode == 2
    assert "OCR resources folder does not exist" in done.stderr
