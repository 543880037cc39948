"""Which files of a host may be proposed to free space, and in which order: the one place for both.

The "not used for N days" and watermark policies and the "free X GB" planner all ask the same
question, so the safety rules and the order live here once:

* **never** a file held open or memory-mapped at the agent's last look (in use now);
* **never** a file Aspose itself would load (``known_to_aspose``) or the last copy of its
  bytes in the fleet (no other active host's current inventory has its sha256), unless the
  caller allows it;
* never a link, an unhashed file, or a file already in an open prune request.

The order: files unused for ``unused_days`` first, largest first (they are all equally
unused, so the biggest free the most with the fewest deletions), then the rest from the least
recently used. "Used" is the best evidence ``usage.last_use`` has (seen open, else atime
where the mount records it); a file with no evidence counts as unused since the agent began
watching it (``FileUsage.watched_since``), and says so. Never mtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from ..approvals import workflow
from ..models import FileUsage, Host, ModelFile
from . import usage as usage_mod


@dataclass
class Candidate:
    file: ModelFile
    usage: FileUsage | None
    last_use: usage_mod.LastUse
    # The latest time the file may have been used: last use if known, else the start of watching.
    used_by: datetime | None
    unused: bool = False
    excluded: str = ""  # why it may not be proposed; "" when it may
    why: str = ""  # why it was chosen (filled by the order)

    @property
    def size(self) -> int:
        return self.file.size

    @property
    def in_use_now(self) -> bool:
        return bool(self.usage is not None and self.usage.open_by)


@dataclass
class Candidates:
    host: Host
    now: datetime
    unused_days: int
    ordered: list[Candidate] = field(default_factory=list)  # may be proposed, in the stated order
    excluded: list[Candidate] = field(default_factory=list)


def other_copies(host: Host, shas: set[str]) -> set[str]:
    """The sha256s among ``shas`` that another active host's current inventory also holds."""
    if not shas:
        return set()
    snapshots = (
        Host.objects.exclude(pk=host.pk)
        .exclude(status=Host.Status.RETIRED)
        .exclude(current_snapshot__isnull=True)
        .values("current_snapshot_id")
    )
    return set(
        ModelFile.objects.filter(snapshot_id__in=snapshots, sha256__in=shas, is_symlink=False)
        .values_list("sha256", flat=True)
        .distinct()
    )


def _describe(c: Candidate, now: datetime) -> str:
    lu = c.last_use
    if lu.at is not None:
        days = (now - lu.at).days
        age = "today" if days < 1 else f"{days} day{'s' if days != 1 else ''} ago"
        return f"last used {age} ({lu.label})"
    if c.used_by is not None:
        days = (now - c.used_by).days
        return f"never seen open in {days} day{'s' if days != 1 else ''} of looks, atime not recorded"
    return "no record of use"


def collect(
    host: Host,
    *,
    unused_days: int = 30,
    allow_known: bool = False,
    allow_last_copy: bool = False,
    now: datetime | None = None,
    files: Sequence[ModelFile] | None = None,
) -> Candidates:
    """Every file of ``host``'s current inventory, split into proposable (ordered) and excluded."""
    now = now or timezone.now()
    result = Candidates(host=host, now=now, unused_days=unused_days)
    if files is None:
        if host.current_snapshot_id is None:
            return result
        files = list(
            ModelFile.objects.filter(snapshot_id=host.current_snapshot_id).select_related("snapshot")
        )
    usages = usage_mod.usages_for(host)
    busy = workflow.keys_in_open_requests(host, files)
    copies = other_copies(host, {f.sha256 for f in files if f.sha256})
    cutoff = now - timedelta(days=unused_days)
    unused: list[Candidate] = []
    used: list[Candidate] = []
    for f in files:
        u = usages.get((f.store, f.path))
        lu = usage_mod.last_use(u)
        c = Candidate(f, u, lu, lu.at if lu.at is not None else (u.watched_since if u is not None else None))
        if f.is_symlink or not f.sha256:
            c.excluded = "a link or an unhashed file"
        elif (f.store, f.path) in busy:
            c.excluded = "already in an open request"
        elif u is not None and u.open_by:
            c.excluded = "in use now by " + ", ".join(usage_mod.holder_label(h) for h in u.open_by[:3])
        elif f.known_to_aspose and not allow_known:
            c.excluded = "Aspose loads this file"
        elif f.sha256 not in copies and not allow_last_copy:
            c.excluded = "the last copy in the fleet"
        if c.excluded:
            result.excluded.append(c)
            continue
        c.unused = c.used_by is None or c.used_by < cutoff
        (unused if c.unused else used).append(c)
    unused.sort(key=lambda c: (-c.size, c.file.store, c.file.path))
    used.sort(key=lambda c: (c.used_by or now, -c.size, c.file.store, c.file.path))
    for c in unused:
        c.why = f"unused for over {unused_days} days: {_describe(c, now)}"
    for c in used:
        c.why = f"least recently used: {_describe(c, now)}"
    result.ordered = unused + used
    return result


def shortest_prefix(ordered: Sequence[Candidate], need: int) -> tuple[list[Candidate], int]:
    """The shortest prefix of ``ordered`` that frees at least ``need`` bytes (all of it if none does)."""
    chosen, freed = [], 0
    for c in ordered:
        if freed >= need:
            break
        chosen.append(c)
        freed += c.size
    return chosen, freed
