"""Which files are proposed for deletion: small rules over a host's current snapshot.

A policy only *selects*; it never deletes. ``run_policy`` turns a selection into one
PruneRequest through ``workflow.propose`` (policy=<name>), so a policy's proposal goes through
the same two-person approval as a hand-picked one.

Every rule leaves out what cannot or should not be proposed: symlinks and unhashed files
(the agent could not verify them) and files already in an open prune request. Files Aspose
itself would load (``known_to_aspose``) are never selected by ``not_known_to_aspose`` and are
carried with that flag onto the request's items by every other rule, so an approver sees them.

To add a policy: subclass Policy, give it ``name``/``label``/``description``/``params`` and a
``select``, and add an instance to REGISTRY. Pages and the API list REGISTRY as it is.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..approvals import workflow
from ..models import Host, ModelFile, PruneRequest
from . import candidates, watermarks


class PolicyError(workflow.WorkflowError):
    """Unknown policy or bad parameter; ``str()`` is fit to show the user."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: type  # int or str
    default: Callable[[], Any]
    help: str
    minimum: int | None = None

    def clean(self, raw: Any) -> Any:
        if self.kind is int:
            try:
                value = int(raw)
            except (TypeError, ValueError):
                raise PolicyError(f"{self.name} must be a whole number, got {raw!r}") from None
            if self.minimum is not None and value < self.minimum:
                raise PolicyError(f"{self.name} must be at least {self.minimum}, got {value}")
            return value
        text = str(raw).strip()
        if not text:
            raise PolicyError(f"{self.name} must not be empty")
        return text


class Policy(ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()

    def clean(
        self, raw: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Parameters from a form or a JSON body (strings are fine), defaults filled in: from
        ``defaults`` (a host's own, ``defaults_for``) where given, else each Param's."""
        raw = {k: v for k, v in (raw or {}).items() if v not in (None, "")}
        known = {p.name for p in self.params}
        if unknown := sorted(set(raw) - known):
            raise PolicyError(f"policy {self.name} has no parameter {', '.join(unknown)}")
        given = defaults or {}
        return {
            p.name: p.clean(raw[p.name]) if p.name in raw else given.get(p.name, p.default())
            for p in self.params
        }

    def defaults_for(self, host: Host, marks: watermarks.Marks | None = None) -> dict[str, Any]:
        """The defaults of this rule's parameters that depend on the host; most rules have none.

        ``marks``: the host's watermark marks where the caller has read them already (the host
        page shows them too), so that a page reads the rule once."""
        return {}

    @abstractmethod
    def select(self, files: Sequence[ModelFile], now: datetime, *args: Any, **params: Any) -> list[ModelFile]:
        """The files of one snapshot this rule proposes for deletion.

        A subclass names its own parameters as keyword-only arguments, one per ``Param`` of
        ``params`` (``*, days: int``); callers pass what ``clean_params`` returned. The
        ``*args: Any, **params: Any`` here is what lets a type checker accept each of those
        narrower signatures as an override.
        """

    def describe(self, params: Mapping[str, Any]) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        return f"{self.label} ({shown})" if shown else self.label

    def as_dict(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """For the pages and the API: what the rule does and what it takes (``defaults``: a
        host's own, as ``clean`` would fill them in)."""
        given = defaults or {}
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "params": [
                {
                    "name": p.name,
                    "type": p.kind.__name__,
                    "default": given.get(p.name, p.default()),
                    "help": p.help,
                }
                for p in self.params
            ],
        }


class NamePrefix(Policy):
    name = "prefix"
    label = "Name prefix"
    description = "Files whose name (not folder) starts with a prefix, like the tutorial's old_ models."
    params = (
        Param("prefix", str, lambda: settings.OCRDASH["STALE_PREFIX"], "file name prefix, case-sensitive"),
    )

    def select(self, files: Sequence[ModelFile], now: datetime, *, prefix: str) -> list[ModelFile]:
        return [f for f in files if f.name.startswith(prefix)]


class OlderThan(Policy):
    name = "older_than"
    label = "Older than"
    description = (
        "Files not modified for more than a number of days (by the file's mtime, which says nothing "
        "about use: see Not used for)."
    )
    params = (Param("days", int, lambda: 90, "minimum age in days", minimum=0),)

    def select(self, files: Sequence[ModelFile], now: datetime, *, days: int) -> list[ModelFile]:
        cutoff_ns = int((now - timedelta(days=days)).timestamp() * 1_000_000_000)
        return [f for f in files if f.mtime_ns < cutoff_ns]


class NotKnownToAspose(Policy):
    name = "not_known_to_aspose"
    label = "Not known to Aspose"
    description = (
        "Files Aspose.OCR would not load itself (list_local does not return them). "
        "Aggressive: this includes every model your own code loads by path."
    )

    def select(self, files: Sequence[ModelFile], now: datetime) -> list[ModelFile]:
        return [f for f in files if not f.known_to_aspose]


_DIGITS = re.compile(r"\d+")
_SEPARATORS = re.compile(r"[-_.\s]+")


def model_family(path: str) -> str:
    """The family of a model file: same folder, same extension, same name once every digit
    is removed (separator runs then count as one, case ignored).

    So ``en_ocr_v1.gguf``, ``en_ocr_v2.gguf`` and ``en-ocr-v10.gguf`` are one family
    (``en_ocr_v.gguf``); ``en_ocr_v1.bin`` (other format) and ``sub/en_ocr_v1.gguf`` (other
    folder) are not. A prefix is part of the name: ``old_en_ocr_v1.gguf`` is its own family.
    """
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension, or a dotfile like ".hidden"
        stem, ext = name, ""
    stem = _SEPARATORS.sub("_", _DIGITS.sub("", stem.lower())).strip("_")
    return f"{folder}/{stem}.{ext.lower()}" if folder else f"{stem}.{ext.lower()}"


class KeepLatest(Policy):
    name = "keep_latest"
    label = "Keep newest per family"
    description = (
        "In each model family (same folder and extension, same name without its digits, "
        "e.g. en_ocr_v1.gguf and en_ocr_v2.gguf), keep the newest N files by mtime; propose the rest."
    )
    params = (Param("keep", int, lambda: 1, "files to keep per family", minimum=1),)

    def select(self, files: Sequence[ModelFile], now: datetime, *, keep: int) -> list[ModelFile]:
        families: dict[str, list[ModelFile]] = defaultdict(list)
        for f in files:
            families[model_family(f.path)].append(f)
        chosen = []
        for members in families.values():
            # Newest first; the path breaks ties so the same inventory always gives the same answer.
            members.sort(key=lambda f: (-f.mtime_ns, f.path))
            chosen.extend(members[keep:])
        return sorted(chosen, key=lambda f: f.path)


def _host_of(files: Sequence[ModelFile]) -> Host | None:
    return files[0].snapshot.host if files else None


_SAFETY = (
    "Never a file in use now (held open or memory-mapped at the agent's last look), and unless "
    "allowed never a file Aspose loads or the last copy of its bytes in the fleet."
)


class NotUsedFor(Policy):
    name = "not_used_for"
    label = "Not used for"
    description = (
        "Files not used for a number of days: by when the agent last saw a process hold them, else "
        "by their access time where the mount records it (relatime: within a day); never by mtime. "
        "A file with neither counts from when the agent began watching it. " + _SAFETY
    )
    params = (
        Param("days", int, lambda: 30, "days without use", minimum=1),
        Param("allow_known", int, lambda: 0, "1: Aspose's own files may be proposed too", minimum=0),
        Param("allow_last_copy", int, lambda: 0, "1: the fleet's last copy may be proposed too", minimum=0),
    )

    def select(self, files, now, *, days: int, allow_known: int, allow_last_copy: int):
        host = _host_of(files)
        if host is None:
            return []
        found = candidates.collect(
            host,
            unused_days=days,
            allow_known=bool(allow_known),
            allow_last_copy=bool(allow_last_copy),
            now=now,
            files=files,
        )
        return sorted((c.file for c in found.ordered if c.unused), key=lambda f: (f.store, f.path))


class Watermark(Policy):
    name = "watermark"
    label = "Disk watermark"
    description = (
        "When the host's disk is fuller than the high mark, the least recently used files until use "
        "would be under the low mark (as kubelet does with images); nothing while under the high mark. "
        + _SAFETY
    )
    params = (
        # Without a host (a campaign, the API's list of rules) the fleet's default marks, read
        # where the watermark rule reads them.
        Param("high", int, lambda: watermarks.default_marks().high, "disk use % that triggers it", minimum=1),
        Param("low", int, lambda: watermarks.default_marks().low, "disk use % to get back under", minimum=0),
        Param("allow_known", int, lambda: 0, "1: Aspose's own files may be proposed too", minimum=0),
        Param("allow_last_copy", int, lambda: 0, "1: the fleet's last copy may be proposed too", minimum=0),
    )

    def clean(self, raw=None, defaults=None):
        cleaned = super().clean(raw, defaults)
        if not cleaned["low"] < cleaned["high"] <= 100:
            raise PolicyError(f"need low < high <= 100, got low={cleaned['low']} high={cleaned['high']}")
        return cleaned

    def defaults_for(self, host: Host, marks: watermarks.Marks | None = None) -> dict[str, Any]:
        """The marks that apply to the host (its own schedule's, its groups', the default): a
        run by hand without marks proposes what the host's watermark would."""
        marks = marks if marks is not None else watermarks.marks_for(host)
        return {"high": marks.high, "low": marks.low}

    def select(self, files, now, *, high: int, low: int, allow_known: int, allow_last_copy: int):
        host = _host_of(files)
        if host is None or not host.disk_total or host.disk_free is None:
            return []
        used = host.disk_total - host.disk_free
        if used * 100 <= high * host.disk_total:
            return []
        need = used - (low * host.disk_total) // 100
        found = candidates.collect(
            host, allow_known=bool(allow_known), allow_last_copy=bool(allow_last_copy), now=now, files=files
        )
        lru = sorted(found.ordered, key=lambda c: (c.used_by or now, -c.size, c.file.store, c.file.path))
        chosen, _ = candidates.shortest_prefix(lru, need)
        return [c.file for c in chosen]


class FreeSpace(Policy):
    name = "free_space"
    label = "Free space"
    description = (
        "The planner's choice on each host: the smallest set of safe deletions that frees at least "
        "the given bytes, files unused for the given days first (largest first), then the least "
        "recently used. What a group's free-space plan runs as a campaign. " + _SAFETY
    )
    params = (
        Param("bytes", int, lambda: 2**30, "bytes to free on each host", minimum=1),
        Param("unused_days", int, lambda: 30, "days without use that count as unused", minimum=1),
        Param("allow_known", int, lambda: 0, "1: Aspose's own files may be proposed too", minimum=0),
        Param("allow_last_copy", int, lambda: 0, "1: the fleet's last copy may be proposed too", minimum=0),
    )

    def select(self, files, now, *, bytes: int, unused_days: int, allow_known: int, allow_last_copy: int):
        host = _host_of(files)
        if host is None:
            return []
        found = candidates.collect(
            host,
            unused_days=unused_days,
            allow_known=bool(allow_known),
            allow_last_copy=bool(allow_last_copy),
            now=now,
            files=files,
        )
        chosen, _ = candidates.shortest_prefix(found.ordered, bytes)
        return [c.file for c in chosen]


REGISTRY: dict[str, Policy] = {
    p.name: p
    for p in (
        NamePrefix(),
        OlderThan(),
        NotKnownToAspose(),
        KeepLatest(),
        NotUsedFor(),
        Watermark(),
        FreeSpace(),
    )
}


def get_policy(name: str) -> Policy:
    try:
        return REGISTRY[name]
    except KeyError:
        raise PolicyError(f"no policy named {name!r} (known: {', '.join(REGISTRY)})") from None


@dataclass
class Selection:
    """What a policy picks on a host now, before any request exists (a preview)."""

    policy: Policy
    params: dict[str, Any]
    files: list[ModelFile] = field(default_factory=list)
    # Matched, but left out: already in an open request, or not prunable (link, unhashed).
    skipped_busy: list[str] = field(default_factory=list)
    skipped_unprunable: list[str] = field(default_factory=list)


@dataclass
class PolicyRun:
    selection: Selection
    request: PruneRequest | None  # None: nothing to propose


def select(host: Host, name: str, params: Mapping[str, Any] | None = None, now=None) -> Selection:
    """The files policy ``name`` picks in ``host``'s current snapshot (nothing is written).

    Parameters not given take the host's own defaults (``Policy.defaults_for``)."""
    policy = get_policy(name)
    cleaned = policy.clean(params, policy.defaults_for(host))
    selection = Selection(policy, cleaned)
    if host.current_snapshot_id is None:
        return selection
    files = list(
        ModelFile.objects.filter(snapshot_id=host.current_snapshot_id).select_related("snapshot__host")
    )
    picked = policy.select(files, now or timezone.now(), **cleaned)
    busy = workflow.keys_in_open_requests(host, picked)
    for f in picked:
        if (f.store, f.path) in busy:
            selection.skipped_busy.append(f.path)
        elif f.is_symlink or not f.sha256:
            selection.skipped_unprunable.append(f.path)
        else:
            selection.files.append(f)
    return selection


def run_policy(
    host: Host,
    name: str,
    *,
    user=None,
    params: Mapping[str, Any] | None = None,
    reason: str = "",
    mode: str = PruneRequest.Mode.QUARANTINE,
) -> PolicyRun:
    """Propose one request with what policy ``name`` selects on ``host`` (None if nothing).

    The host row is locked for the run, so two runs on one host (a double click, the
    scheduler and a person) do not both select the same files and then fail in propose.
    """
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        selection = select(host, name, params)
        if not selection.files:
            return PolicyRun(selection, None)
        rule = selection.policy.describe(selection.params)
        full_reason = f"policy {rule}: {reason.strip()}" if reason.strip() else f"policy {rule}"
        request = workflow.propose(
            host=host, files=selection.files, reason=full_reason, user=user, policy=name, mode=mode
        )
    return PolicyRun(selection, request)
