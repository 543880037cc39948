"""Audit events said in words ("proposed pruning 2 files (4.5 MB): superseded by v2"), for the
audit page; the raw details stay one click away and in the CSV export.

One function per action that people read often; anything else falls back to "key value"
pairs, so a new action is readable before anyone writes its sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.template.defaultfilters import filesizeformat

from .models import AuditEvent

A = AuditEvent.Action
OUTCOMES = {
    "quarantined": "moved to the quarantine",
    "deleted": "deleted",
    "restored": "put back",
    "skipped_changed": "skipped: the file changed since the inventory",
    "skipped_missing": "skipped: the file was no longer there",
    "skipped_in_use": "skipped: the file was in use",
    "refused": "refused by the agent",
    "error": "failed",
}


def _size(value: Any) -> str:
    return filesizeformat(value) if isinstance(value, int) else "?"


def _comment(d: dict) -> str:
    return f": “{d['comment']}”" if d.get("comment") else ""


def _proposed(d: dict) -> str:
    what = "restoring" if d.get("kind") == "restore" else "pruning"
    size = f" ({_size(d['bytes'])})" if "bytes" in d else ""
    policy = f" by policy {d['policy']}" if d.get("policy") not in (None, "", "manual") else ""
    return f"proposed {what} {d.get('files', '?')} file(s){size}{policy}: {d.get('reason', '')}".rstrip(": ")


def _outcome(d: dict) -> str:
    said = OUTCOMES.get(d.get("outcome", ""), d.get("outcome", "?"))
    freed = f", {_size(d['bytes_reclaimed'])} freed" if d.get("bytes_reclaimed") else ""
    quiet = d.get("outcome") in ("quarantined", "deleted")  # their detail is only the quarantine path
    detail = f" ({d['detail']})" if d.get("detail") and not quiet else ""
    return f"{d.get('path', '?')}: {said}{freed}{detail}"


def _finished(d: dict) -> str:
    if d.get("reason"):
        return f"ended {d.get('state', '?')}: {d['reason']}"
    freed = f", {_size(d['bytes_reclaimed'])} reclaimed" if d.get("bytes_reclaimed") else ""
    done = f"{d.get('succeeded', '?')} of {d.get('items', '?')} file(s) done"
    return f"ended {d.get('state', '?')}: {done}{freed}"


def _ingested(d: dict) -> str:
    kind = d.get("kind", "report")
    if kind == "inventory":
        return f"inventory: {d.get('files', '?')} file(s), {_size(d.get('bytes'))}"
    if "outcomes" in d:
        return f"{kind} answer: {d['outcomes']} outcome(s){', resources freed' if d.get('freed') else ''}"
    return f"{kind} report"


SENTENCES: dict[str, Callable[[dict], str]] = {
    A.REQUEST_PROPOSED: _proposed,
    A.REQUEST_APPROVED: lambda d: f"approved{_comment(d)}",
    A.REQUEST_REJECTED: lambda d: f"rejected{_comment(d)}",
    A.REQUEST_WITHDRAWN: lambda d: f"withdrawn by its proposer{_comment(d)}",
    A.REQUEST_EXPIRED: lambda d: f"expired: {d.get('reason') or 'nobody decided in time'}",
    A.REQUEST_DISPATCHED: lambda d: f"sent to the host (attempt {d.get('attempt', '?')})",
    A.DISPATCH_FAILED: lambda d: f"could not be sent (attempt {d.get('attempt', '?')}): {d.get('error', '')}",
    A.REQUEST_FINISHED: _finished,
    A.ITEM_OUTCOME: _outcome,
    A.REPORT_INGESTED: _ingested,
    A.REPORT_REJECTED: lambda d: f"{d.get('kind') or 'report'} refused: {d.get('reason', '')}",
    A.SECURITY_REJECTED: lambda d: f"refused, not trusted: {d.get('reason', '')}",
    A.RESOURCES_FREED: lambda d: "resources freed" if d.get("freed") else "resources could not be freed",
    A.QUARANTINE_PURGED: lambda d: (
        f"{len(d.get('purged_requests') or [])} quarantined request(s) emptied, "
        f"{_size(d.get('bytes_purged'))} freed"
        + (
            f"; the purge did not finish: {d.get('detail') or 'stopped'}; "
            f"{len(d.get('kept_requests') or [])} request(s), "
            f"{_size(d.get('bytes_kept'))} still in quarantine"
            if "kept_requests" in d
            else ""
        )
    ),
    A.AGENT_ERROR: lambda d: f"{d.get('task', 'an order')} failed on the host: {d.get('reason', '')}",
}


def in_words(event: AuditEvent) -> str:
    """The event's details as a sentence, or "" when only the raw pairs can say it."""
    sentence = SENTENCES.get(event.action)
    if sentence is None:
        return ""
    try:
        return sentence(event.details or {})
    except (KeyError, TypeError, ValueError):  # an old event with other details: pairs then
        return ""
