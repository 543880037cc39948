"""Both Aspose stores: the OCR engine's Resources folder beside AsposeAI's LLM folder.

The real package pins what ``Resources`` does; prune, restore and purge run on real folders
of both stores with the same relative path in each, so a mix-up between stores shows.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from workers.aspose_backend import AsposeSession, ModelDirNotFound, Resources
from workers.inventory import scan
from workers.prune import QUARANTINE_DIR, prune_stores, purge_stores, restore_stores
from workers.schema import FileIdentity, ModelDirState, Outcome, PruneMode, Store
from workers.state import StateDB
from workers.tests.conftest import ASPOSE_MODEL, write


@pytest.fixture
def ocr_dir(tmp_path: Path) -> Path:
    path = tmp_path / "aspose_data"
    path.mkdir()
    return path


def identity(root: Path, rel: str, store: Store) -> FileIdentity:
    path = root / rel
    st = os.lstat(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return FileIdentity(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest, store=store)


def test_raw_resources_lists_top_level_ocr_names_without_extension(ocr_dir: Path) -> None:
    write(ocr_dir / "english.OCR")
    write(ocr_dir / "latin.ocr")  # case-insensitive
    write(ocr_dir / "notes.txt")
    write(ocr_dir / "sub" / "deep.OCR")  # subfolders are ignored
    Resources.set_local_path(str(ocr_dir), False)
    assert Resources.get_local_path() == str(ocr_dir)
    assert sorted(str(n) for n in Resources.list_local()) == ["english", "latin"]
    # remove_local deletes nothing, whatever name it is given: our quarantine is the way.
    for name in ("english", "english.OCR", str(ocr_dir / "english.OCR")):
        Resources.remove_local(name)
    assert (ocr_dir / "english.OCR").exists()


def test_raw_set_local_path_refuses_a_missing_folder(tmp_path: Path, ocr_dir: Path) -> None:
    Resources.set_local_path(str(ocr_dir), False)
    with pytest.raises(RuntimeError, match="does not exist"):
        Resources.set_local_path(str(tmp_path / "nope"), False)
    assert Resources.get_local_path() == str(ocr_dir)


def test_session_names_the_files_resources_would_load(
    models_dir: Path, state_dir: Path, ocr_dir: Path
) -> None:
    write(ocr_dir / "english.OCR")
    write(ocr_dir / "Latin.ocr")
    write(ocr_dir / "old_english.OCR.bak")
    with AsposeSession(models_dir, state_dir, ocr_dir) as session:
        assert session.ocr_dir == ocr_dir
        assert session.ocr_list_local() == ["Latin.ocr", "english.OCR"]
    assert session.freed


def test_session_reports_a_missing_ocr_folder(models_dir: Path, state_dir: Path, tmp_path: Path) -> None:
    with AsposeSession(models_dir, state_dir, tmp_path / "gone") as session, pytest.raises(ModelDirNotFound):
        session.ocr_list_local()


def test_scan_lists_both_stores_with_their_own_known_files(
    models_dir: Path, state_dir: Path, ocr_dir: Path, db: StateDB
) -> None:
    write(models_dir / ASPOSE_MODEL, b"llama")
    write(models_dir / "same.bin", b"llm copy")
    write(ocr_dir / "english.OCR", b"eng")
    write(ocr_dir / "same.bin", b"ocr copy")
    write(ocr_dir / QUARANTINE_DIR / "r0" / "gone.OCR", b"quarantined")
    with AsposeSession(models_dir, state_dir, ocr_dir) as session:
        result = scan(session, db)
    files = {(f.store, f.path): f for f in result.files}
    assert sorted(files) == [
        (Store.LLM, ASPOSE_MODEL),
        (Store.LLM, "same.bin"),
        (Store.OCR, "english.OCR"),
        (Store.OCR, "same.bin"),
    ]
    assert files[(Store.LLM, ASPOSE_MODEL)].known_to_aspose
    assert files[(Store.OCR, "english.OCR")].known_to_aspose
    assert not files[(Store.OCR, "same.bin")].known_to_aspose
    assert files[(Store.OCR, "same.bin")].sha256 == hashlib.sha256(b"ocr copy").hexdigest()
    stores = {s.store: s for s in result.facts.stores}
    assert stores[Store.OCR].root == str(ocr_dir) and stores[Store.OCR].state is ModelDirState.OK
    assert stores[Store.LLM].root == str(models_dir)


def test_a_missing_ocr_folder_is_a_state_not_a_crash(
    models_dir: Path, state_dir: Path, tmp_path: Path, db: StateDB
) -> None:
    write(models_dir / "a.gguf")
    with AsposeSession(models_dir, state_dir, tmp_path / "no_aspose_data") as session:
        result = scan(session, db)
    stores = {s.store: s for s in result.facts.stores}
    assert stores[Store.OCR].state is ModelDirState.MISSING
    assert "OCR resources folder does not exist" in stores[Store.OCR].error
    assert result.facts.model_dir_state is ModelDirState.OK
    assert [f.path for f in result.files] == ["a.gguf"]


def test_prune_restore_purge_keep_each_store_in_its_own_quarantine(
    models_dir: Path, ocr_dir: Path, db: StateDB
) -> None:
    write(models_dir / "old_same.OCR", b"llm bytes")
    write(ocr_dir / "old_same.OCR", b"ocr bytes!")
    roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
    items = [identity(models_dir, "old_same.OCR", Store.LLM), identity(ocr_dir, "old_same.OCR", Store.OCR)]

    outcomes = prune_stores(roots, db, "r1", items, PruneMode.QUARANTINE)

    assert [(o.store, o.outcome) for o in outcomes] == [
        (Store.LLM, Outcome.QUARANTINED),
        (Store.OCR, Outcome.QUARANTINED),
    ]
    assert [o.bytes_reclaimed for o in outcomes] == [9, 10]
    assert (models_dir / QUARANTINE_DIR / "r1" / "old_same.OCR").read_bytes() == b"llm bytes"
    assert (ocr_dir / QUARANTINE_DIR / "r1" / "old_same.OCR").read_bytes() == b"ocr bytes!"
    # A redelivered order is answered per store from the records, touching nothing.
    assert prune_stores(roots, db, "r1", items, PruneMode.QUARANTINE) == outcomes

    restored = restore_stores(roots, db, "r2", "r1", {Store.OCR: ["old_same.OCR"]})
    assert [(o.store, o.path, o.outcome) for o in restored] == [(Store.OCR, "old_same.OCR", Outcome.RESTORED)]
    assert (ocr_dir / "old_same.OCR").read_bytes() == b"ocr bytes!"
    assert not (models_dir / "old_same.OCR").exists()

    [purged] = purge_stores(roots, db, retention_days=0)
    assert (purged.request_id, purged.bytes_purged, purged.files) == ("r1", 9, 1)
    assert not (models_dir / QUARANTINE_DIR / "r1").exists()


def test_the_ocr_store_has_the_same_path_safety(
    models_dir: Path, ocr_dir: Path, db: StateDB, tmp_path: Path
) -> None:
    secret = write(tmp_path / "outside" / "secret.OCR", b"secret")
    (ocr_dir / "link.OCR").symlink_to(secret)
    roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
    fake = FileIdentity(
        path="x", size=6, mtime_ns=1, sha256=hashlib.sha256(b"secret").hexdigest(), store=Store.OCR
    )
    (ocr_dir / "linkdir").symlink_to(secret.parent)
    items = [
        fake.model_copy(update={"path": "link.OCR"}),
        fake.model_copy(update={"path": "linkdir/secret.OCR"}),
        fake.model_copy(update={"path": f"{QUARANTINE_DIR}/r/x.OCR"}),
    ]
    for bad in ("../outside/secret.OCR", str(secret)):  # refused on arrival, before any store
        with pytest.raises(ValueError):
            FileIdentity(path=bad, size=6, mtime_ns=1, sha256="0" * 64, store=Store.OCR)
    outcomes = prune_stores(roots, db, "r1", items, PruneMode.DELETE)
    assert {o.outcome for o in outcomes} == {Outcome.REFUSED}
    assert secret.read_bytes() == b"secret"


def test_an_item_of_a_store_the_host_lacks_is_an_error_per_item(models_dir: Path, db: StateDB) -> None:
    item = FileIdentity(path="a.OCR", size=1, mtime_ns=1, sha256="0" * 64, store=Store.OCR)
    [outcome] = prune_stores({Store.LLM: models_dir, Store.OCR: None}, db, "r1", [item], PruneMode.QUARANTINE)
    assert outcome.outcome is Outcome.ERROR and "no OCR resources folder" in outcome.detail
