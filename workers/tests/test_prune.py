"""Pruning under attack: real symlinks, traversal, swaps, hard links and open files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.hashing import HashCache
from workers.prune import QUARANTINE_DIR, Pruner, _Stop, purge, purge_requests, restore, split_relpath
from workers.schema import FileIdentity, Outcome, PruneMode
from workers.state import StateDB
from workers.tests.conftest import write


def identity(root: Path, rel: str) -> FileIdentity:
    path = root / rel
    st = os.lstat(path)
    return FileIdentity(
        path=rel,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def fake_identity(rel: str, data: bytes = b"x") -> FileIdentity:
    return FileIdentity(path=rel, size=len(data), mtime_ns=1, sha256=hashlib.sha256(data).hexdigest())


def one(pruner: Pruner, item: FileIdentity, mode: PruneMode = PruneMode.QUARANTINE, rid: str = "r1"):
    [result] = pruner.prune(rid, [item], mode)
    return result


@pytest.fixture
def pruner(models_dir: Path, db: StateDB) -> Pruner:
    return Pruner(models_dir, db)


def test_quarantine_keeps_relative_path_and_bytes(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / "fr" / "old_fr_ocr_v1.bin", b"old model")
    item = identity(models_dir, "fr/old_fr_ocr_v1.bin")
    result = one(pruner, item)
    assert result.outcome is Outcome.QUARANTINED
    assert result.bytes_reclaimed == 9
    assert not (models_dir / "fr" / "old_fr_ocr_v1.bin").exists()
    moved = models_dir / QUARANTINE_DIR / "r1" / "fr" / "old_fr_ocr_v1.bin"
    assert moved.read_bytes() == b"old model"
    assert os.stat(moved).st_mtime_ns == item.mtime_ns


def test_delete_mode_unlinks(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / "old.bin", b"bye")
    result = one(pruner, identity(models_dir, "old.bin"), PruneMode.DELETE)
    assert result.outcome is Outcome.DELETED and result.bytes_reclaimed == 3
    assert not (models_dir / "old.bin").exists()
    assert not (models_dir / QUARANTINE_DIR / "r1" / "old.bin").exists()


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.bin", "a/../../outside.bin", "./x", "a//b"])
def test_traversal_and_absolute_paths_are_refused(models_dir: Path, pruner: Pruner, path: str) -> None:
    outside = write(models_dir.parent / "outside.bin", b"x")
    # The schema refuses such a path on arrival; the pruner refuses it again on its own.
    with pytest.raises(ValueError):
        fake_identity(path)
    with pytest.raises(_Stop) as stop:
        split_relpath(path)
    assert stop.value.outcome is Outcome.REFUSED
    assert outside.exists()


def test_symlink_to_outside_file_is_refused(models_dir: Path, pruner: Pruner, tmp_path: Path) -> None:
    target = write(tmp_path / "victim.bin", b"precious")
    (models_dir / "old.bin").symlink_to(target)
    result = one(pruner, identity(tmp_path, "victim.bin").model_copy(update={"path": "old.bin"}))
    assert result.outcome is Outcome.REFUSED
    assert target.read_bytes() == b"precious"
    assert (models_dir / "old.bin").is_symlink()


def test_path_through_symlinked_folder_is_refused(models_dir: Path, pruner: Pruner, tmp_path: Path) -> None:
    victim = write(tmp_path / "etc" / "old.bin", b"precious")
    (models_dir / "sub").symlink_to(tmp_path / "etc")
    result = one(pruner, identity(tmp_path, "etc/old.bin").model_copy(update={"path": "sub/old.bin"}))
    assert result.outcome is Outcome.REFUSED and "symlink" in result.detail
    assert victim.exists()


def test_folder_swapped_for_symlink_after_inventory(models_dir: Path, pruner: Pruner, tmp_path: Path) -> None:
    write(models_dir / "sub" / "old.bin", b"model")
    item = identity(models_dir, "sub/old.bin")
    # The attacker moves the real folder away and points the name at a copy elsewhere.
    (models_dir / "sub").rename(tmp_path / "moved")
    victim = write(tmp_path / "elsewhere" / "old.bin", b"model")
    os.utime(victim, ns=(item.mtime_ns, item.mtime_ns))
    (models_dir / "sub").symlink_to(tmp_path / "elsewhere")
    result = one(pruner, item)
    assert result.outcome is Outcome.REFUSED
    assert victim.exists()


def test_file_replaced_between_inventory_and_prune(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / "old.bin", b"original")
    item = identity(models_dir, "old.bin")
    write(models_dir / "old.bin", b"replaced")  # same size
    os.utime(models_dir / "old.bin", ns=(item.mtime_ns, item.mtime_ns))  # and same mtime
    result = one(pruner, item)
    assert result.outcome is Outcome.SKIPPED_CHANGED and "sha256" in result.detail
    assert (models_dir / "old.bin").read_bytes() == b"replaced"


def test_changed_size_is_skipped(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / "old.bin", b"original")
    item = identity(models_dir, "old.bin")
    write(models_dir / "old.bin", b"grown bigger")
    assert one(pruner, item).outcome is Outcome.SKIPPED_CHANGED
    assert (models_dir / "old.bin").exists()


def test_hard_linked_file_is_refused(models_dir: Path, pruner: Pruner, tmp_path: Path) -> None:
    write(models_dir / "old.bin", b"shared")
    os.link(models_dir / "old.bin", tmp_path / "other-name")
    result = one(pruner, identity(models_dir, "old.bin"))
    assert result.outcome is Outcome.REFUSED and "hard-linked" in result.detail
    assert (models_dir / "old.bin").exists()


def test_missing_file(pruner: Pruner) -> None:
    assert one(pruner, fake_identity("gone.bin")).outcome is Outcome.SKIPPED_MISSING
    assert one(pruner, fake_identity("nodir/gone.bin"), rid="r2").outcome is Outcome.SKIPPED_MISSING


def test_quarantine_folder_itself_is_off_limits(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / QUARANTINE_DIR / "old" / "x.bin", b"x")
    result = one(pruner, identity(models_dir, f"{QUARANTINE_DIR}/old/x.bin"))
    assert result.outcome is Outcome.REFUSED


def test_quarantine_folder_planted_as_symlink_is_refused(
    models_dir: Path, pruner: Pruner, tmp_path: Path
) -> None:
    (tmp_path / "trap").mkdir()
    (models_dir / QUARANTINE_DIR).symlink_to(tmp_path / "trap")
    write(models_dir / "old.bin")
    result = one(pruner, identity(models_dir, "old.bin"))
    assert result.outcome is Outcome.REFUSED
    assert (models_dir / "old.bin").exists()
    assert list((tmp_path / "trap").iterdir()) == []


def test_quarantine_never_overwrites(models_dir: Path, pruner: Pruner) -> None:
    write(models_dir / QUARANTINE_DIR / "r1" / "old.bin", b"earlier")
    write(models_dir / "old.bin", b"new one")
    result = one(pruner, identity(models_dir, "old.bin"))
    assert result.outcome is Outcome.ERROR
    assert (models_dir / QUARANTINE_DIR / "r1" / "old.bin").read_bytes() == b"earlier"
    assert (models_dir / "old.bin").exists()


def test_file_held_open_by_another_process_is_skipped(models_dir: Path, pruner: Pruner) -> None:
    path = write(models_dir / "busy.gguf", b"loaded")
    item = identity(models_dir, "busy.gguf")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys,time; f=open({str(path)!r},'rb'); print('ok', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        result = one(pruner, item)
        assert result.outcome is Outcome.SKIPPED_IN_USE
        assert str(holder.pid) in result.detail
        assert path.exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert one(pruner, item, rid="r2").outcome is Outcome.QUARANTINED


def test_rerun_reports_the_same_and_touches_nothing(models_dir: Path, db: StateDB) -> None:
    write(models_dir / "a.bin", b"a")
    write(models_dir / "b.bin", b"b")
    items = [
        identity(models_dir, "a.bin"),
        identity(models_dir, "b.bin"),
        fake_identity(f"{QUARANTINE_DIR}/x"),
    ]
    first = Pruner(models_dir, db).prune("req", items, PruneMode.DELETE)
    assert [r.outcome for r in first] == [Outcome.DELETED, Outcome.DELETED, Outcome.REFUSED]
    # A new file with the same name and identity appears: the recorded request must not delete it.
    write(models_dir / "a.bin", b"a")
    os.utime(models_dir / "a.bin", ns=(items[0].mtime_ns, items[0].mtime_ns))
    second = Pruner(models_dir, db).prune("req", items, PruneMode.DELETE)
    assert second == first
    assert (models_dir / "a.bin").exists()


def test_interrupted_run_finds_its_file_in_quarantine(
    models_dir: Path, state_dir: Path, tmp_path: Path
) -> None:
    write(models_dir / "a.bin", b"a")
    item = identity(models_dir, "a.bin")
    # First run on a state folder that is then lost (crash before the record was kept).
    assert one(Pruner(models_dir, StateDB(tmp_path / "lost")), item).outcome is Outcome.QUARANTINED
    again = one(Pruner(models_dir, StateDB(state_dir)), item)
    assert again.outcome is Outcome.QUARANTINED and again.bytes_reclaimed == 1


def test_restore_puts_files_back_and_never_overwrites(models_dir: Path, db: StateDB, pruner: Pruner) -> None:
    write(models_dir / "x" / "a.bin", b"a")
    write(models_dir / "b.bin", b"b")
    pruner.prune("p1", [identity(models_dir, "x/a.bin"), identity(models_dir, "b.bin")], PruneMode.QUARANTINE)
    write(models_dir / "b.bin", b"someone put a new one here")
    outcomes = {o.path: o.outcome for o in restore(models_dir, db, "rs1", "p1")}
    assert outcomes == {"x/a.bin": Outcome.RESTORED, "b.bin": Outcome.REFUSED}
    assert (models_dir / "x" / "a.bin").read_bytes() == b"a"
    assert (models_dir / "b.bin").read_bytes() == b"someone put a new one here"
    assert (models_dir / QUARANTINE_DIR / "p1" / "b.bin").read_bytes() == b"b"
    # Same restore request again: same outcomes, nothing moved.
    assert {o.path: o.outcome for o in restore(models_dir, db, "rs1", "p1")} == outcomes
    assert (
        restore(models_dir, db, "rs2", "p1", ["nope.bin", f"{QUARANTINE_DIR}/x"])[0].outcome
        is Outcome.SKIPPED_MISSING
    )
    assert (
        restore(models_dir, db, "rs2", "p1", ["nope.bin", f"{QUARANTINE_DIR}/x"])[1].outcome
        is Outcome.REFUSED
    )


def test_purge_respects_retention(models_dir: Path, db: StateDB, pruner: Pruner, tmp_path: Path) -> None:
    write(models_dir / "a.bin", b"aaaa")
    pruner.prune("p1", [identity(models_dir, "a.bin")], PruneMode.QUARANTINE)
    outside = write(tmp_path / "outside" / "keep.bin")
    (models_dir / QUARANTINE_DIR / "p1" / "link").symlink_to(tmp_path / "outside")
    assert purge(models_dir, db, retention_days=7) == ([], 0)
    assert (models_dir / QUARANTINE_DIR / "p1" / "a.bin").exists()
    purged = purge(models_dir, db, retention_days=7, now=time.time() + 8 * 86400)
    assert purged == (["p1"], 4)
    assert not (models_dir / QUARANTINE_DIR / "p1").exists()
    assert outside.exists()


def test_an_early_purge_removes_exactly_the_named_requests(
    models_dir: Path, db: StateDB, pruner: Pruner
) -> None:
    write(models_dir / "a.bin", b"aaaa")
    with open(bytes(models_dir) + b"/caf\xe9.bin", "wb") as fh:
        fh.write(b"latin")
    write(models_dir / "b.bin", b"bb")
    pruner.prune("p1", [identity(models_dir, "a.bin")], PruneMode.QUARANTINE)
    st = os.lstat(bytes(models_dir) + b"/caf\xe9.bin")
    latin = FileIdentity(
        path="caf\\xe9.bin", size=5, mtime_ns=st.st_mtime_ns, sha256=hashlib.sha256(b"latin").hexdigest()
    )
    assert one(pruner, latin, rid="p2").outcome is Outcome.QUARANTINED
    pruner.prune("p3", [identity(models_dir, "b.bin")], PruneMode.QUARANTINE)
    done = purge_requests(models_dir, db, retention_days=7, only=["p2", "p3", "never-was"])
    assert [(p.request_id, p.bytes_purged, p.files) for p in done] == [("p2", 5, 1), ("p3", 2, 1)]
    assert (models_dir / QUARANTINE_DIR / "p1" / "a.bin").exists()
    assert not (models_dir / QUARANTINE_DIR / "p2").exists()


def test_rescan_for_prune_uses_hash_cache(models_dir: Path, db: StateDB) -> None:
    write(models_dir / "a.bin", b"a" * 100)
    item = identity(models_dir, "a.bin")
    cache = HashCache(db)
    st = os.stat(models_dir / "a.bin")
    db.store_hash(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, item.sha256)
    assert one(Pruner(models_dir, db, cache), item).outcome is Outcome.QUARANTINED
    assert cache.stats.files_hashed == 0 and cache.stats.cache_hits == 1


def test_in_place_rewrite_with_mtime_set_back_is_not_trusted_from_cache(
    models_dir: Path, db: StateDB
) -> None:
    write(models_dir / "old.bin", b"original")
    item = identity(models_dir, "old.bin")
    cache = HashCache(db)
    fd = os.open(models_dir / "old.bin", os.O_RDONLY)
    try:
        assert cache.sha256_fd(fd) == item.sha256  # the inventory cached it
    finally:
        os.close(fd)
    with open(models_dir / "old.bin", "r+b") as f:  # same inode, same size
        f.write(b"tampered")
    os.utime(models_dir / "old.bin", ns=(item.mtime_ns, item.mtime_ns))
    result = one(Pruner(models_dir, db, cache), item)
    assert result.outcome is Outcome.SKIPPED_CHANGED
    assert cache.stats.files_hashed == 2


def test_a_prune_reads_proc_once_for_all_its_items(models_dir: Path, db: StateDB, monkeypatch) -> None:
    from workers import procs

    items = [identity(models_dir, write(models_dir / f"m{i}.bin", bytes([i])).name) for i in range(20)]
    looks: list[int] = []
    original = procs.open_files

    def counting(**kw):
        looks.append(1)
        return original(**kw)

    monkeypatch.setattr(procs, "open_files", counting)
    outcomes = Pruner(models_dir, db).prune("many", items, PruneMode.QUARANTINE)
    assert [o.outcome for o in outcomes] == [Outcome.QUARANTINED] * 20
    assert len(looks) == 1


def test_a_purge_names_the_quarantined_files_that_were_no_longer_there(
    models_dir: Path, db: StateDB, pruner: Pruner
) -> None:
    """A file the agent moved into quarantine and that is gone from the folder by the purge
    (deleted by hand, lost with a disk) is named, so that the dashboard neither counts it
    freed by the purge nor keeps counting it in quarantine."""
    write(models_dir / "a.bin", b"aaaa")
    write(models_dir / "sub" / "b.bin", b"bb")
    items = [identity(models_dir, "a.bin"), identity(models_dir, "sub/b.bin")]
    pruner.prune("p1", items, PruneMode.QUARANTINE)
    (models_dir / QUARANTINE_DIR / "p1" / "sub" / "b.bin").unlink()

    [done] = purge_requests(models_dir, db, retention_days=0, only=["p1"])

    assert (done.bytes_purged, done.files) == (4, 1)
    assert [(m.path, m.store.value) for m in done.missing] == [("sub/b.bin", "llm")]
    assert not (models_dir / QUARANTINE_DIR / "p1").exists()
