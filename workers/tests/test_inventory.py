from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from workers import hashing
from workers.aspose_backend import AsposeSession
from workers.inventory import (
    QUARANTINE_DIR,
    ScannedInventory,
    file_entries,
    host_facts,
    inventory_report,
    scan,
)
from workers.schema import InventoryReport, ModelDirState, SchemaError, parse_report
from workers.state import StateDB
from workers.tests.conftest import ASPOSE_MODEL, write


def by_path(result) -> dict:
    return {f.path: f for f in result.files}


def test_walk_hashes_and_joins_with_aspose(session: AsposeSession, models_dir: Path, db: StateDB) -> None:
    write(models_dir / "en_ocr_v1.gguf", b"current")
    write(models_dir / "sub" / ASPOSE_MODEL, b"llama")
    write(models_dir / "deep" / "er" / "old_fr_ocr_v1.bin", b"old")
    write(models_dir / QUARANTINE_DIR / "r1" / "gone.bin", b"quarantined")
    result = scan(session, db)
    files = by_path(result)
    assert sorted(files) == ["deep/er/old_fr_ocr_v1.bin", "en_ocr_v1.gguf", f"sub/{ASPOSE_MODEL}"]
    assert files["en_ocr_v1.gguf"].sha256 == hashlib.sha256(b"current").hexdigest()
    assert files["en_ocr_v1.gguf"].size == 7
    assert files["en_ocr_v1.gguf"].mtime_ns == os.stat(models_dir / "en_ocr_v1.gguf").st_mtime_ns
    assert files[f"sub/{ASPOSE_MODEL}"].known_to_aspose
    assert not files["en_ocr_v1.gguf"].known_to_aspose
    facts = result.facts
    assert facts.model_dir_state is ModelDirState.OK
    assert facts.model_dir == str(models_dir)
    assert facts.disk_total and facts.disk_free is not None
    assert facts.aspose_version.startswith("26.")


def test_symlinks_are_reported_never_followed(
    session: AsposeSession, models_dir: Path, db: StateDB, tmp_path: Path
) -> None:
    write(tmp_path / "outside" / "secret.bin", b"secret")
    write(tmp_path / "outside" / "dir" / ASPOSE_MODEL, b"llama")
    (models_dir / "link.bin").symlink_to(tmp_path / "outside" / "secret.bin")
    (models_dir / "linkdir").symlink_to(tmp_path / "outside" / "dir")
    result = scan(session, db)
    files = by_path(result)
    assert sorted(files) == ["link.bin", "linkdir"]
    assert files["link.bin"].is_symlink and files["link.bin"].sha256 is None
    # Aspose follows the linked folder, so removing the link would hide its model.
    assert files["linkdir"].known_to_aspose
    assert result.stats.files_hashed == 0


def test_rescan_of_unchanged_files_reads_nothing(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / "a.gguf", b"a" * 3_000_000)
    write(models_dir / "b.bin", b"b")
    with AsposeSession(models_dir, state_dir) as session:
        first = scan(session, StateDB(state_dir))
    assert first.stats.files_hashed == 2 and first.stats.bytes_hashed == 3_000_001
    with AsposeSession(models_dir, state_dir) as session:
        second = scan(session, StateDB(state_dir))
    assert second.stats.files_hashed == 0 and second.stats.bytes_hashed == 0
    assert second.stats.cache_hits == 2
    assert second.files == first.files
    # A changed file is hashed again, and only that one.
    write(models_dir / "b.bin", b"changed")
    with AsposeSession(models_dir, state_dir) as session:
        third = scan(session, StateDB(state_dir))
    assert third.stats.files_hashed == 1
    assert by_path(third)["b.bin"].sha256 == hashlib.sha256(b"changed").hexdigest()


def test_missing_model_folder_is_a_state(tmp_path: Path, state_dir: Path, db: StateDB) -> None:
    with AsposeSession(tmp_path / "absent", state_dir) as session:
        result = scan(session, db)
    assert result.facts.model_dir_state is ModelDirState.MISSING
    assert "does not exist" in result.facts.model_dir_error
    assert result.files == []


def test_model_folder_that_is_a_file_is_unreadable(tmp_path: Path, state_dir: Path, db: StateDB) -> None:
    write(tmp_path / "file")
    with AsposeSession(tmp_path / "file", state_dir) as session:
        result = scan(session, db)
    assert result.facts.model_dir_state is ModelDirState.UNREADABLE
    assert result.facts.model_dir_error


def test_the_process_copy_of_the_hashes_never_outlives_its_database_or_a_change(
    session: AsposeSession, models_dir: Path, tmp_path: Path
) -> None:
    for i in range(6):
        write(models_dir / f"m{i}.bin", f"model {i}".encode())
    state = tmp_path / "state-copy"
    with StateDB(state) as db:
        assert scan(session, db).stats.files_hashed == 6
        # Rewritten in place with its old size and mtime put back: ctime moved, hashed again.
        target = models_dir / "m0.bin"
        before = target.stat()
        target.write_bytes(b"MODEL 0")
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        again = scan(session, db)
        assert again.stats.files_hashed == 1
        entry = next(f for f in again.files if f.path == "m0.bin")
        assert entry.sha256 == hashlib.sha256(b"MODEL 0").hexdigest()
    # The database removed and made anew: nothing of it is taken from the process's copy.
    for leftover in state.glob("agent.sqlite3*"):
        leftover.unlink()
    with StateDB(state) as db:
        assert scan(session, db).stats.files_hashed == 6


def count_cache_queries(db: StateDB, monkeypatch) -> list[int]:
    """The number of inodes of each hash-cache query ``db`` answers from now on."""
    queries: list[int] = []
    hashes_of = db.hashes_of

    def counted(dev, inodes):
        queries.append(len(inodes))
        return hashes_of(dev, inodes)

    monkeypatch.setattr(db, "hashes_of", counted)
    return queries


def test_a_tree_too_large_to_copy_is_read_from_the_database_at_every_scan(
    session: AsposeSession, models_dir: Path, db: StateDB, monkeypatch
) -> None:
    for i in range(12):
        write(models_dir / f"d{i % 3}" / f"m{i}.bin", f"model {i}".encode())
    monkeypatch.setattr(hashing, "RECENT_MAX", 5)
    monkeypatch.setattr(hashing, "_process_rows", {})
    first = scan(session, db)
    assert first.stats.files_hashed == 12
    queries = count_cache_queries(db, monkeypatch)
    again = scan(session, db)
    assert again.stats.cache_hits == 12 and again.stats.files_hashed == 0 and again.files == first.files
    assert sorted(queries) == [0, 4, 4, 4]  # the root and each folder, as before there was a copy
    assert set(hashing._process_rows.values()) == {None}


def test_a_scan_writes_its_hashes_in_one_transaction(
    session: AsposeSession, models_dir: Path, db: StateDB, monkeypatch
) -> None:
    for i in range(50):
        write(models_dir / f"d{i % 5}" / f"m{i}.bin", f"model {i}".encode())
    batches: list[int] = []
    store = db.store_hashes

    def store_counted(rows):
        batches.append(len(rows))
        return store(rows)

    monkeypatch.setattr(db, "store_hashes", store_counted)
    result = scan(session, db)
    assert result.stats.files_hashed == 50
    assert batches == [50]
    queries = count_cache_queries(db, monkeypatch)
    # A rescan by the same process reads nothing: the rows it wrote are its own copy.
    again = scan(session, db)
    assert again.stats.cache_hits == 50 and again.stats.files_hashed == 0
    assert queries == []
    assert again.files == result.files
    # Another process (no copy) asks the database once per folder, never per file.
    monkeypatch.setattr(hashing, "_process_rows", {})
    fresh = scan(session, db)
    assert fresh.stats.cache_hits == 50 and fresh.stats.files_hashed == 0
    assert sorted(queries) == [10, 10, 10, 10, 10]
    assert fresh.files == result.files
    assert scan(session, db).files == result.files and len(queries) == 5


def test_aspose_listing_is_reused_only_while_the_folders_it_reads_are_unchanged(
    models_dir: Path, state_dir: Path, db: StateDB, monkeypatch
) -> None:
    write(models_dir / "deep" / "er" / "a.bin", b"a")
    calls = []
    original = AsposeSession.list_local

    def counting(self: AsposeSession) -> list[str]:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(AsposeSession, "list_local", counting)
    with AsposeSession(models_dir, state_dir) as session:
        scan(session, db)
        scan(session, db)
        assert len(calls) == 1
        # A file deep down changes nothing Aspose reads ...
        write(models_dir / "deep" / "er" / "b.bin", b"b")
        scan(session, db)
        assert len(calls) == 1
        # ... a model appearing in a first-level folder does.
        write(models_dir / "sub" / ASPOSE_MODEL, b"llama")
        files = by_path(scan(session, db))
        assert len(calls) == 2
        assert files[f"sub/{ASPOSE_MODEL}"].known_to_aspose


def test_the_report_is_built_in_wire_form_and_reads_back_as_the_walk_found_it(
    session: AsposeSession, models_dir: Path, db: StateDB
) -> None:
    write(models_dir / "en_ocr_v1.gguf", b"current")
    write(models_dir / "sub" / ASPOSE_MODEL, b"llama")
    os.symlink("/etc", models_dir / "etc-link")
    write(models_dir / "caf\udce9.bin", b"latin-1 name")
    write(models_dir / "plain" / "back\\slash.bin", b"a backslash among plain names")
    write(models_dir / "plain" / "tab\there.bin", b"a control character")
    result = scan(session, db)
    report = inventory_report("ocr-1", result, "r1")
    body = report.to_json()
    plain = next(f for f in body["files"] if f["path"] == "en_ocr_v1.gguf")
    # Defaults are left out of the wire form; the dashboard's parse fills them in.
    assert set(plain) == {"path", "size", "mtime_ns", "sha256", "atime_ns"}
    assert next(f for f in body["files"] if f["path"] == "etc-link")["is_symlink"] is True
    parsed = parse_report(json.loads(json.dumps(body)))
    assert isinstance(parsed, InventoryReport) and parsed.report_id == report.report_id
    assert parsed.files == file_entries(result.files) == report.files
    assert {f.path for f in parsed.files if f.known_to_aspose} == {f"sub/{ASPOSE_MODEL}"}
    assert {"caf\\xe9.bin", "plain/back\\\\slash.bin", "plain/tab\\x09here.bin"} <= {
        f.path for f in parsed.files
    }
    # What the outbox reads back is the same report.
    assert ScannedInventory.from_json(json.loads(json.dumps(body))) == report


def test_a_stored_inventory_with_a_bad_file_is_refused_naming_the_file() -> None:
    facts = host_facts(Path("/nonexistent"), ModelDirState.MISSING, "gone")
    header = InventoryReport(host="ocr-1", facts=facts, files=[]).to_json()
    good = {"path": "a.bin", "size": 1, "mtime_ns": 1, "sha256": "0" * 64}
    files = [good] * 2500 + [{**good, "path": "../etc/passwd"}]
    with pytest.raises(SchemaError, match=r"files\.2500\.path"):
        ScannedInventory.from_json({**header, "files": files})
    with pytest.raises(SchemaError, match="at most 100000"):
        ScannedInventory.from_json({**header, "files": [good] * 100_001})
