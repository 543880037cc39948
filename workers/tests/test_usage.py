"""Last used: atime and the mount's atime mode, and who holds model files now (real processes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workers.aspose_backend import AsposeSession
from workers.inventory import scan
from workers.schema import AtimeMode, Store
from workers.state import StateDB
from workers.tests.conftest import write
from workers.usage import atime_mode, last_seen, look, mount_of, parse_mountinfo, record

REAL_MOUNTINFO_LINES = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
45 27 0:40 / /srv/models rw,noatime - tmpfs tmpfs rw,size=1024k
46 27 0:41 / /srv/strict rw - tmpfs tmpfs rw,size=1024k
47 45 0:42 / /srv/models/with\\040space rw,nosuid,relatime shared:5 - xfs /dev/sdb1 rw
"""


def test_parse_mountinfo_reads_each_mode_and_the_longest_mount_point() -> None:
    mounts = parse_mountinfo(REAL_MOUNTINFO_LINES)
    assert mount_of("/srv/models/a.gguf", mounts).atime_mode is AtimeMode.NOATIME
    assert mount_of("/srv/strict/x", mounts).atime_mode is AtimeMode.STRICTATIME
    assert mount_of("/srv/models/with space/b", mounts).atime_mode is AtimeMode.RELATIME  # optional field too
    assert (
        mount_of("/srv/modelsX/b", mounts).mount_point == "/"
    )  # a prefix of the name is not a folder prefix
    assert mount_of("/etc/hosts", mounts).atime_mode is AtimeMode.RELATIME


def test_this_machines_mountinfo_names_the_mount_of_a_folder(tmp_path: Path) -> None:
    mode, point = atime_mode(tmp_path)
    assert mode is not AtimeMode.UNKNOWN
    assert str(tmp_path).startswith(point.rstrip("/") + "/") or point == "/"
    # The same answer findmnt gives for this folder.
    if shutil.which("findmnt"):
        done = subprocess.run(
            ["findmnt", "-n", "-o", "TARGET,OPTIONS", "-T", str(tmp_path)], capture_output=True, text=True
        )
        target, options = done.stdout.split()
        assert target == point
        expected = (
            "noatime" if "noatime" in options else "relatime" if "relatime" in options else "strictatime"
        )
        assert mode.value == expected


@pytest.mark.parametrize("option", ["noatime", "relatime", "strictatime"])
def test_a_real_mount_of_each_mode_is_read_from_proc(tmp_path: Path, option: str) -> None:
    """A tmpfs mounted with the option in a private mount namespace (needs root: skipped otherwise)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("mounting needs root and unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = f"from workers.usage import atime_mode; m, p = atime_mode({str(mnt)!r}); print(m.value, p)"
    script = f"mount -t tmpfs -o {option},size=1m tmpfs {mnt} && exec {sys.executable} -c {probe!r}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [option, str(mnt)]


HOLDER = textwrap.dedent(
    """
    import ctypes, mmap, os, sys, time
    held = open(sys.argv[1], "rb")
    fd = os.open(sys.argv[2], os.O_RDONLY)
    # libc's mmap, not Python's (which keeps a duplicate descriptor open).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    c = ctypes
    libc.mmap.argtypes = [c.c_void_p, c.c_size_t, c.c_int, c.c_int, c.c_int, c.c_long]
    addr = libc.mmap(None, os.fstat(fd).st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    os.close(fd)  # the map alone keeps the model in use, as llama.cpp-style loaders do
    print("ready", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder(models_dir: Path):
    write(models_dir / "open.gguf", b"held by a descriptor")
    write(models_dir / "sub" / "mapped.gguf", b"held by a memory map")
    write(models_dir / "idle.gguf", b"nobody")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(models_dir / "open.gguf"),
            str(models_dir / "sub" / "mapped.gguf"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_look_finds_a_real_process_by_descriptor_and_by_memory_map(models_dir: Path, holder) -> None:
    seen = look({Store.LLM: models_dir})
    assert not seen.error and seen.processes > 1
    program = Path(f"/proc/{holder.pid}/comm").read_text().strip()
    by_file = {path: [(h.pid, h.program, h.how) for h in hs] for (_, path), hs in seen.holders.items()}
    assert by_file["open.gguf"] == [(holder.pid, program, "fd")]
    assert by_file["sub/mapped.gguf"] == [(holder.pid, program, "mmap")]
    assert "idle.gguf" not in by_file


def test_scan_reports_holders_and_remembers_last_seen_after_the_process_ended(
    models_dir: Path, state_dir: Path, db: StateDB, holder
) -> None:
    with AsposeSession(models_dir, state_dir) as session:
        first = scan(session, db)
    files = {f.path: f for f in first.files}
    assert [h.pid for h in files["open.gguf"].open_by] == [holder.pid]
    assert [h.how for h in files["sub/mapped.gguf"].open_by] == ["mmap"]
    assert files["idle.gguf"].open_by == () and files["idle.gguf"].last_open_at is None
    assert first.facts.open_checked_at is not None
    seen_at = files["open.gguf"].last_open_at
    assert seen_at is not None and files["open.gguf"].last_open_by.endswith(f"(pid {holder.pid})")
    assert files["open.gguf"].atime_ns == os.stat(models_dir / "open.gguf").st_atime_ns

    holder.kill()
    holder.wait(timeout=10)
    with AsposeSession(models_dir, state_dir) as session:
        second = scan(session, db)
    files = {f.path: f for f in second.files}
    assert files["open.gguf"].open_by == ()
    assert files["open.gguf"].last_open_at == seen_at  # remembered, from the state database


def test_hashing_does_not_count_as_a_use(models_dir: Path, state_dir: Path, db: StateDB) -> None:
    path = write(models_dir / "fresh.gguf", b"never read by anyone")
    past = time.time_ns() - 10 * 86400 * 10**9
    os.utime(path, ns=(past, past))  # atime <= mtime: relatime would update it on any read
    with AsposeSession(models_dir, state_dir) as session:
        result = scan(session, db)
    [entry] = result.files
    assert entry.sha256 is not None  # it was read to be hashed...
    assert entry.atime_ns == past and os.stat(path).st_atime_ns == past  # ...without moving atime


def test_record_keeps_the_latest_sighting(db: StateDB, models_dir: Path, holder) -> None:
    first = look({Store.LLM: models_dir})
    record(db, first)
    later = look({Store.LLM: models_dir})
    record(db, later)
    record(db, first)  # an older look arriving late does not win
    assert last_seen(db)[(Store.LLM, "open.gguf")][0] == later.at


def test_look_over_a_proc_tree_without_processes_is_empty(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    assert look({Store.LLM: tmp_path}, proc=str(tmp_path / "proc")).holders == {}
    assert "cannot list" in look({Store.LLM: tmp_path}, proc=str(tmp_path / "nope")).error


FILES = ["open.gguf", "sub/mapped.gguf", "idle.gguf"]


def fake_proc(base: Path, holds: list[Path]) -> str:
    """A /proc-shaped tree of one process whose descriptors name ``holds`` (unknown to the kernel)."""
    fd = base / "proc" / "4242" / "fd"
    fd.mkdir(parents=True)
    (base / "proc" / "4242" / "comm").write_text("fake\n")
    for n, path in enumerate(holds):
        os.symlink(path, fd / str(n))
    return str(base / "proc")


def test_the_kernel_answers_first_and_proc_is_not_read_when_nobody_holds_a_file(
    tmp_path: Path, models_dir: Path
) -> None:
    write(models_dir / "idle.gguf", b"nobody")
    proc = fake_proc(tmp_path, [models_dir / "idle.gguf"])
    # The tree claims a holder; the full look believes it, the lease test knows better.
    assert set(look({Store.LLM: models_dir}, proc=proc).holders) == {(Store.LLM, "idle.gguf")}
    seen = look({Store.LLM: models_dir}, proc=proc, files={Store.LLM: ["idle.gguf"]})
    assert seen.method == "lease" and seen.holders == {} and seen.processes == 0


def test_lease_first_names_the_holder_by_descriptor_and_by_memory_map(models_dir: Path, holder) -> None:
    seen = look({Store.LLM: models_dir}, files={Store.LLM: FILES})
    assert seen.method == "lease+proc" and not seen.error and not seen.held_unnamed
    by_file = {path: [(h.pid, h.how) for h in hs] for (_, path), hs in seen.holders.items()}
    assert by_file == {"open.gguf": [(holder.pid, "fd")], "sub/mapped.gguf": [(holder.pid, "mmap")]}
    assert set(seen.holders) == set(look({Store.LLM: models_dir}).holders)  # as the full look says


def test_a_held_file_whose_holder_cannot_be_seen_is_held_unnamed(
    tmp_path: Path, models_dir: Path, holder
) -> None:
    # /proc shows no process holding anything (as for another user's process): the kernel still knows.
    proc = fake_proc(tmp_path, [])
    seen = look({Store.LLM: models_dir}, proc=proc, files={Store.LLM: FILES})
    assert seen.holders == {}
    assert seen.held_unnamed == {(Store.LLM, "open.gguf"), (Store.LLM, "sub/mapped.gguf")}


def test_many_more_files_than_processes_take_one_full_look(tmp_path: Path, models_dir: Path) -> None:
    for n in range(11):
        write(models_dir / f"m{n}.gguf", b"x")
    proc = fake_proc(tmp_path, [models_dir / "m3.gguf"])  # one process: ten lease tests are worth it, not 11
    seen = look({Store.LLM: models_dir}, proc=proc, files={Store.LLM: [f"m{n}.gguf" for n in range(11)]})
    assert seen.method == "proc" and set(seen.holders) == {(Store.LLM, "m3.gguf")}


MAPPER = textwrap.dedent(
    """
    import ctypes, mmap, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    c = ctypes
    libc.mmap.argtypes = [c.c_void_p, c.c_size_t, c.c_int, c.c_int, c.c_int, c.c_long]
    for path in sys.argv[1:]:
        fd = os.open(path, os.O_RDONLY)
        addr = libc.mmap(None, os.fstat(fd).st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        os.close(fd)
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_a_process_mapping_files_of_both_stores_is_named_for_each(tmp_path: Path, models_dir: Path) -> None:
    ocr_dir = tmp_path / "ocr"
    llm_file = write(models_dir / "llm.gguf", b"an LLM")
    ocr_file = write(ocr_dir / "eng.OCR", b"an OCR model")
    proc = subprocess.Popen(
        [sys.executable, "-c", MAPPER, str(llm_file), str(ocr_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
        expected = {
            (Store.LLM, "llm.gguf"): [(proc.pid, "mmap")],
            (Store.OCR, "eng.OCR"): [(proc.pid, "mmap")],
        }
        for seen in (look(roots), look(roots, files={Store.LLM: ["llm.gguf"], Store.OCR: ["eng.OCR"]})):
            assert {key: [(h.pid, h.how) for h in hs] for key, hs in seen.holders.items()} == expected
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_look_that_stops_early_reads_the_process_with_fewest_descriptors_first(models_dir: Path) -> None:
    if os.stat("/proc/self/fd").st_size == 0:
        pytest.skip("this kernel does not count a process's descriptors (Linux 6.2 on does)")
    path = write(models_dir / "shared.gguf", b"held by two")
    keep = "import sys, time; fs = [open('/dev/null') for _ in range(int(sys.argv[2]))]; "
    script = keep + "held = open(sys.argv[1], 'rb'); print('ready', flush=True); time.sleep(120)"
    # The busy one starts first, so /proc lists it first.
    busy, lean = (
        subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        for n in (300, 0)
    )
    try:
        for p in (busy, lean):
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        seen = look({Store.LLM: models_dir}, files={Store.LLM: ["shared.gguf"]})
        assert seen.method == "lease+proc"
        assert [h.pid for h in seen.holders[(Store.LLM, "shared.gguf")]] == [lean.pid]
        # The full look still names both.
        assert {h.pid for h in look({Store.LLM: models_dir}).holders[(Store.LLM, "shared.gguf")]} == {
            busy.pid,
            lean.pid,
        }
    finally:
        for p in (busy, lean):
            p.kill()
            p.wait(timeout=10)
