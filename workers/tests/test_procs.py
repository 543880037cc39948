"""One look at /proc answers for every file: real processes holding a file open or mapped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workers import procs
from workers.tests.conftest import write

HOLD = (
    "import mmap, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "if sys.argv[2] == 'map':\n"
    "    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)\n"
    "    os.close(fd)\n"
    "print('ok', flush=True)\n"
    "time.sleep(60)\n"
)


def hold(path: Path, how: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), how], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ok"
    return proc


def test_one_look_names_the_holders_of_open_and_mapped_files(tmp_path: Path) -> None:
    opened, mapped, idle = (
        write(tmp_path / n, b"model bytes") for n in ("opened.bin", "mapped.bin", "idle.bin")
    )
    holders = [hold(opened, "open"), hold(mapped, "map")]
    try:
        st = {p: os.stat(p) for p in (opened, mapped, idle)}
        look = procs.open_files(devices={st[opened].st_dev})
        assert [p.pid for p in look.holders(st[opened].st_dev, st[opened].st_ino)] == [holders[0].pid]
        assert [p.pid for p in look.holders(st[mapped].st_dev, st[mapped].st_ino)] == [holders[1].pid]
        assert look.holders(st[idle].st_dev, st[idle].st_ino) == []
        assert look.holders(st[opened].st_dev, st[opened].st_ino)[0].program.startswith("python")
    finally:
        for h in holders:
            h.kill()
            h.wait(timeout=10)


def test_the_kernel_lease_sees_an_open_file_and_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "m.bin", b"model bytes")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert procs.nobody_else_has_open(fd) is True
        for how in ("open", "map"):
            holder = hold(path, how)
            try:
                assert procs.nobody_else_has_open(fd) is False
            finally:
                holder.kill()
                holder.wait(timeout=10)
        assert procs.nobody_else_has_open(fd) is True
    finally:
        os.close(fd)


def test_visibility_is_a_sentence() -> None:
    complete, sentence = procs.visibility()
    assert sentence.startswith("in-use check: ")
    assert isinstance(complete, bool)
