"""Progress of long agent work, sent as signed ProgressReports on the normal report path.

One ``ProgressReporter`` per order. Work calls it as a plain callback (``reporter(nbytes)``
for bytes hashed, ``reporter.item()`` for a file pruned), so the walk and the hash cache only
know a callable. It sends at most one report every ``interval`` seconds, or sooner when the
work moved by ``step`` (5 %) since the last one, never two within ``min_gap``: a fast
inventory of small files sends nothing, an hour of hashing sends one report every 2 s.
Sending never fails the work: a broker hiccup costs one report, the next one replaces it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Literal

from workers import __version__
from workers.schema import ProgressReport
from workers.walk import walk

log = logging.getLogger(__name__)

Phase = Literal["hashing", "pruning", "restoring", "purging"]
Send = Callable[[ProgressReport], None]


class ProgressReporter:
    def __init__(
        self,
        host: str,
        send: Send,
        *,
        interval: float = 2.0,
        step: float = 0.05,
        min_gap: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.send = host, send
        self.interval, self.step, self.min_gap = interval, step, min_gap
        self.clock = clock
        self.request_id: str | None = None
        self.sent = 0

    def begin(
        self,
        request_id: str | None,
        phase: Phase,
        *,
        total_bytes: int | None = None,
        total_items: int | None = None,
    ) -> None:
        """Start counting for one order's phase; nothing is sent until the work moved."""
        self.request_id, self.phase = request_id, phase
        self.total_bytes, self.total_items = total_bytes, total_items
        self.done_bytes = self.done_items = 0
        self.started = self.last_at = self.clock()
        self.last_fraction = 0.0

    def __call__(self, nbytes: int) -> None:
        """``nbytes`` more were hashed (the hash cache's progress callback)."""
        if self.request_id is None:
            return
        self.done_bytes += nbytes
        self._maybe_send()

    def item(self, count: int = 1) -> None:
        """``count`` more items (files pruned, restored) are done."""
        if self.request_id is None:
            return
        self.done_items += count
        self._maybe_send()

    def fraction(self) -> float | None:
        if self.total_bytes:
            return min(self.done_bytes / self.total_bytes, 1.0)
        if self.total_items:
            return min(self.done_items / self.total_items, 1.0)
        return None

    def eta(self, now: float) -> float | None:
        fraction, elapsed = self.fraction(), now - self.started
        if not fraction or elapsed <= 0:
            return None
        return max(elapsed / fraction - elapsed, 0.0)

    def _maybe_send(self) -> None:
        now = self.clock()
        since = now - self.last_at
        fraction = self.fraction() or 0.0
        if since < self.min_gap:
            return
        if since < self.interval and fraction - self.last_fraction < self.step:
            return
        self.last_at, self.last_fraction = now, fraction
        report = ProgressReport(
            host=self.host,
            request_id=self.request_id,
            agent_version=__version__,
            phase=self.phase,
            done_bytes=self.done_bytes,
            total_bytes=self.total_bytes,
            done_items=self.done_items,
            total_items=self.total_items,
            eta_seconds=self.eta(now),
        )
        try:
            self.send(report)
            self.sent += 1
        except Exception as exc:  # progress is best effort: the work goes on regardless
            log.warning("progress report for %s not sent: %s", self.request_id, exc)

    def end(self) -> None:
        self.request_id = None


def folder_bytes(root: os.PathLike[str] | str, skip: str = "") -> int:
    """Bytes of the regular files under ``root`` (links not followed, ``skip`` at the top left
    out): the total a first inventory's hashing bar runs towards. A stat walk, no reads."""
    total = 0
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0  # the inventory that follows says why
    try:
        for folder in walk(root_fd, skip_top=(skip,) if skip else (), problems=[]):
            total += sum(st.st_size for _, st in folder.entries if stat.S_ISREG(st.st_mode))
    except OSError:
        pass  # the root itself unreadable: no total, the inventory says why
    finally:
        os.close(root_fd)
    return total
