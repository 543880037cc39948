"""The shared folder walk (workers.walk): descriptors, links never followed, a tree that changes under it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from workers.walk import walk


@contextmanager
def opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def listing(root: Path, **kwargs) -> dict[str, str]:
    """Every entry the walk reports, by path: "file", "link", "dir" (a folder it entered), "other"."""
    out = {}
    with opened(root) as fd:
        for folder in walk(fd, **kwargs):
            if folder.path:
                out[folder.path] = "dir"
            for name, st in folder.entries:
                path = f"{folder.path}/{name}" if folder.path else name
                kind = "file" if stat.S_ISREG(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) else "other"
                out[path] = kind
    return out


def test_it_lists_files_and_folders_in_order_with_their_lstat(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "deep.bin").write_bytes(b"123")
    (tmp_path / "a.bin").write_bytes(b"1")
    (tmp_path / "b" / "z.bin").write_bytes(b"12")
    os.mkfifo(tmp_path / "fifo")
    seen = []
    with opened(tmp_path) as fd:
        for folder in walk(fd):
            seen.append((folder.path, folder.depth, [(n, st.st_size) for n, st in folder.entries]))
            assert os.path.samestat(os.fstat(folder.fd), os.stat(tmp_path / folder.path))
    assert seen == [
        ("", 0, [("a.bin", 1), ("fifo", 0)]),
        ("b", 1, [("z.bin", 2)]),
        ("b/c", 2, [("deep.bin", 3)]),
    ]


def test_a_symlink_loop_is_listed_as_links_and_never_walked(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("..", tmp_path / "d" / "up")  # d/up -> the root: a loop if followed
    os.symlink("self", tmp_path / "self")  # a link to itself
    os.symlink(tmp_path / "d", tmp_path / "d-again")
    assert listing(tmp_path) == {"d": "dir", "d/up": "link", "self": "link", "d-again": "link"}


def test_a_symlink_out_of_the_root_is_a_link_not_a_way_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    (outside / "secret" / "passwd").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside / "secret", root / "models")  # to a folder outside
    os.symlink(outside / "secret" / "passwd", root / "model.bin")  # to a file outside
    found = listing(root)
    assert found == {"models": "link", "model.bin": "link"}
    assert not any("passwd" in p for p in found)


def test_a_folder_that_vanishes_mid_walk_is_left_out(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.bin").write_bytes(b"x")
    problems: list[str] = []
    seen = []
    with opened(tmp_path) as fd:
        for folder in walk(fd, problems=problems):
            seen.append(folder.path)
            if folder.path == "a":
                shutil.rmtree(tmp_path / "b")  # after the root was listed, before b is opened
    assert seen == ["", "a", "c"] and problems == []


def test_a_folder_swapped_for_a_symlink_mid_walk_is_not_entered(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"x")
    root = tmp_path / "root"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    seen = []
    with opened(root) as fd:
        for folder in walk(fd, problems=[]):
            seen.append(folder.path)
            if folder.path == "a":
                (root / "b").rmdir()
                os.symlink(outside, root / "b")
    assert seen == ["", "a"]


def test_non_utf8_names_come_back_as_os_gives_them(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(raw)
    with open(raw + b"/mod\xffel.bin", "wb") as f:
        f.write(b"x")
    found = listing(tmp_path)
    assert found == {"caf\udce9": "dir", "caf\udce9/mod\udcffel.bin": "file"}
    assert os.fsencode("caf\udce9/mod\udcffel.bin") == b"caf\xe9/mod\xffel.bin"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder_is_recorded_or_raised(tmp_path: Path) -> None:
    (tmp_path / "locked" / "inner").mkdir(parents=True)
    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").chmod(0)
    try:
        problems: list[str] = []
        assert listing(tmp_path, problems=problems) == {"ok": "dir"}
        assert problems == ["locked: Permission denied"]
        with pytest.raises(PermissionError):
            listing(tmp_path)
    finally:
        (tmp_path / "locked").chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_nested_folder_is_named_by_its_whole_path(tmp_path: Path) -> None:
    # Two folders of the same name: the failure names the right one.
    for parent in ("a", "b"):
        (tmp_path / parent / "x").mkdir(parents=True)
    (tmp_path / "b" / "x").chmod(0)
    try:
        problems: list[str] = []
        assert listing(tmp_path, problems=problems) == {"a": "dir", "a/x": "dir", "b": "dir"}
        assert problems == ["b/x: Permission denied"]
    finally:
        (tmp_path / "b" / "x").chmod(0o755)


def test_skip_top_leaves_names_out_at_the_root_only(tmp_path: Path) -> None:
    (tmp_path / ".ocrdash-quarantine" / "r1").mkdir(parents=True)
    (tmp_path / ".ocrdash-quarantine" / "r1" / "old.bin").write_bytes(b"x")
    (tmp_path / "sub" / ".ocrdash-quarantine").mkdir(parents=True)
    assert listing(tmp_path, skip_top={".ocrdash-quarantine"}) == {
        "sub": "dir",
        "sub/.ocrdash-quarantine": "dir",
    }


def test_the_root_that_cannot_be_read_raises(tmp_path: Path) -> None:
    (tmp_path / "gone").mkdir()
    fd = os.open(tmp_path / "gone", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(tmp_path / "gone")
        # A removed folder's descriptor lists nothing: an empty walk, not a crash.
        assert [f.path for f in walk(fd, problems=[])] == [""]
    finally:
        os.close(fd)
    file_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(file_fd)
    with pytest.raises(OSError):
        list(walk(file_fd))  # a closed descriptor
