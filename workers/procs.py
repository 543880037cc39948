"""Which files the processes of this host hold open or mapped: one look at /proc for a whole task.

The in-use check of a prune (and "last seen open" of the capacity rules) asks the same
question for many files: reading every process's ``fd`` folder and ``maps`` once per file cost
tens of milliseconds per file. ``open_files()`` reads them once and answers by (st_dev,
st_ino), so a file renamed or opened through another path is still recognised; ``maps``
catches a model mmapped after its descriptor was closed (llama.cpp-style loaders do that).

What cannot be seen is said, never taken as "not open": a process whose ``fd`` or ``maps``
the agent may not read (another user's, without CAP_SYS_PTRACE) is listed in
``OpenFiles.hidden``, and the caller decides (the pruner refuses the item unless the admin
turned that off). Kernel threads and zombies hold no files and are not counted as hidden.
Processes outside the agent's PID namespace do not appear in /proc at all:
``visibility()`` says so at start, because nothing later can.

``nobody_else_has_open(fd)`` asks the kernel instead: a write lease is granted only while no
other open file of that inode exists, in any process and any namespace (a mapping keeps its
file open, so an mmapped model counts). It needs the file's owner or CAP_LEASE; where it
cannot be had it answers None and /proc decides alone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass, field

_PF_KTHREAD = 0x00200000


@dataclass(frozen=True, order=True)
class Process:
    pid: int
    program: str

    def __str__(self) -> str:
        return f"{self.pid} ({self.program})"


@dataclass
class OpenFiles:
    """One look at /proc: who holds which file, and whom we could not look at."""

    held: dict[tuple[int, int], list[Process]] = field(default_factory=dict)
    hidden: list[Process] = field(default_factory=list)
    processes: int = 0
    taken_at: float = field(default_factory=time.monotonic)

    def holders(self, dev: int, ino: int) -> list[Process]:
        return self.held.get((dev, ino), [])

    @property
    def complete(self) -> bool:
        """Every process in this PID namespace could be inspected."""
        return not self.hidden

    def age(self) -> float:
        return time.monotonic() - self.taken_at

    def hidden_reason(self, limit: int = 5) -> str:
        shown = ", ".join(str(p) for p in self.hidden[:limit])
        more = f" and {len(self.hidden) - limit} more" if len(self.hidden) > limit else ""
        return (
            f"cannot inspect the processes of other users ({len(self.hidden)} hidden: {shown}{more}); "
            "run the agent as the OCR engine's user or with CAP_SYS_PTRACE"
        )


def _program(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def _holds_nothing(pid: str) -> bool:
    """A kernel thread or a zombie: no files of its own, nothing to hide."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return True  # gone
    fields = text[text.rfind(")") + 2 :].split()
    if not fields:
        return True
    if fields[0] in ("Z", "X"):
        return True
    try:
        return bool(int(fields[6]) & _PF_KTHREAD)
    except (IndexError, ValueError):
        return False


def _fds(pid: str, devices: Collection[int] | None) -> list[tuple[int, int]] | None:
    """(dev, ino) of the files ``pid`` holds open; None if we may not look."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except FileNotFoundError:
        return []
    except PermissionError:
        return None
    found = []
    for fd in fds:
        link = f"{base}/{fd}"
        try:
            target = os.readlink(link)
            if not target.startswith("/"):
                continue  # socket:[...], pipe:[...], anon_inode:...: no file of a folder
            st = os.stat(link)
        except FileNotFoundError:
            continue  # closed meanwhile
        except PermissionError:
            return None  # the folder could be listed (CAP_DAC_READ_SEARCH) but not followed
        except OSError:
            continue
        if devices is None or st.st_dev in devices:
            found.append((st.st_dev, st.st_ino))
    return found


def _maps(pid: str, devices: Collection[int] | None) -> list[tuple[int, int]] | None:
    """(dev, ino) of the files ``pid`` has mapped; None if we may not look."""
    found = []
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 5 or fields[4] == "0":
                    continue
                major, minor = fields[3].split(":")
                dev = os.makedev(int(major, 16), int(minor, 16))
                if devices is None or dev in devices:
                    found.append((dev, int(fields[4])))
    except FileNotFoundError:
        return []
    except PermissionError:
        return None
    except (OSError, ValueError):
        return []
    return found


def open_files(devices: Collection[int] | None = None) -> OpenFiles:
    """Read /proc once: which files every process holds open or mapped (but this one).

    ``devices``: keep only files on these st_dev values (the model folder's), which keeps
    the answer small on a busy host.
    """
    me = os.getpid()
    result = OpenFiles()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        fds = _fds(pid, devices)
        maps = _maps(pid, devices) if fds is not None else None
        if fds is None or maps is None:
            if not _holds_nothing(pid):
                result.hidden.append(Process(int(pid), _program(pid)))
                result.processes += 1
            continue
        result.processes += 1
        keys = set(fds)
        keys.update(maps)
        if keys:
            process = Process(int(pid), _program(pid))
            for key in keys:
                result.held.setdefault(key, []).append(process)
    result.hidden.sort()
    return result


def nobody_else_has_open(fd: int) -> bool | None:
    """True if no other open file of ``fd``'s inode exists anywhere, False if one does, None: cannot tell.

    Takes a write lease and gives it back at once. A lease break (someone opening the file
    in between) is signalled to the holder, SIGIO by default, whose default action ends the
    process: the lease's signal is set to SIGURG first, which is ignored by default.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return False
        return None  # EACCES (not the owner, no CAP_LEASE), EINVAL (no leases on this file system)
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return True


def in_own_pid_namespace() -> bool:
    """The agent runs in a PID namespace below the host's (a container without ``pid: host``).

    ``NSpid`` in /proc/self/status lists our pid in every namespace from the outermost; more
    than one means processes outside ours exist that /proc here does not show.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        pass
    return False


def visibility() -> tuple[bool, str]:
    """(can the agent see every process that may hold a model, a sentence saying so) for the start log."""
    look = open_files(devices=())
    if not look.complete:
        return False, f"in-use check: {look.hidden_reason()}"
    if in_own_pid_namespace():
        return False, (
            f"in-use check: sees all {look.processes} processes of its own PID namespace only; "
            'run it in the OCR engine\'s PID namespace (compose: pid: "service:ocr" or pid: host)'
        )
    return True, f"in-use check: sees every process ({look.processes})"
