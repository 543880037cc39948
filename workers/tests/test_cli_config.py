from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.config import ConfigError, load_config, sanitize_host_name
from workers.prune import QUARANTINE_DIR
from workers.tests.conftest import write

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_audit_quarantines_old_keeps_current_and_frees(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "en_ocr_v1.gguf", b"en")
    write(models_dir / "old_fr_ocr_v1.bin", b"fr")
    done = run_cli("audit", "--models-dir", str(models_dir), "--state-dir", str(state_dir), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["freed"] is True
    assert {f["path"]: f["status"] for f in doc["files"]} == {
        "en_ocr_v1.gguf": "CURRENT",
        "old_fr_ocr_v1.bin": "OLD",
    }
    assert [(o["path"], o["outcome"]) for o in doc["outcomes"]] == [("old_fr_ocr_v1.bin", "quarantined")]
    assert doc["bytes_reclaimed"] == 2
    assert (models_dir / "en_ocr_v1.gguf").exists()
    assert (models_dir / QUARANTINE_DIR / doc["request_id"] / "old_fr_ocr_v1.bin").exists()


def test_audit_dry_run_moves_nothing(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "old_fr_ocr_v1.bin", b"fr")
    done = run_cli("audit", "--models-dir", str(models_dir), "--state-dir", str(state_dir), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "OLD" in done.stdout and "would be quarantined" in done.stdout
    assert (models_dir / "old_fr_ocr_v1.bin").exists()


def test_audit_missing_folder_fails_with_one_line(tmp_path: Path) -> None:
    done = run_cli("audit", "--models-dir", str(tmp_path / "absent"), "--state-dir", str(tmp_path / "s"))
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    config = load_config({"OCRDASH_STATE_DIR": str(tmp_path / "s")})
    assert config.broker_url == "redis://127.0.0.1:6379/0"
    assert config.queue == f"ocrdash.host.{config.host_name}"
    assert config.models_dir is None and config.quarantine_days == 7
    assert load_config({"CELERY_BROKER_URL": "redis://x:1/2"}).broker_url == "redis://x:1/2"
    assert sanitize_host_name("My Host (1).local") == "My-Host-1-.local"
    with pytest.raises(ConfigError, match="OCRDASH_HOST_NAME"):
        load_config({"OCRDASH_HOST_NAME": "bad/name"})
    with pytest.raises(ConfigError, match="OCRDASH_QUARANTINE_DAYS"):
        load_config({"OCRDASH_QUARANTINE_DAYS": "a week"})
    with pytest.raises(ConfigError, match="OCRDASH_BROKER_FOLDER"):
        load_config({"OCRDASH_BROKER_URL": "filesystem://"})
    with pytest.raises(ConfigError, match="inside"):
        load_config({"OCRDASH_MODELS_DIR": str(tmp_path), "OCRDASH_STATE_DIR": str(tmp_path / "state")})
