"""Every relative time ("5 minutes ago") on every page comes with its absolute time, and exports
carry ISO-8601 times with their offset.

The pages are not listed by hand: every GET route of the dashboard is visited, its arguments
filled from a small fleet with requests, a campaign, actions and notifications, so a new page
is checked the day it is added. Live fragments (JSON with "html") are checked like pages.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from models_admin.campaigns import plan, rollout
from models_admin.fleet import labels
from models_admin.models import AuditEvent, Campaign, HostAction, Notification, Snapshot
from models_admin.notifications import webhooks
from models_admin.templatetags.ocrdash import reltime
from models_admin.tests import history_factories
from models_admin.tests.conftest import sha
from workers.schema import ItemOutcome, Outcome

pytestmark = pytest.mark.django_db

# What django.contrib.humanize's naturaltime says: "3 minutes ago", "6 months, 3 weeks ago",
# "an hour from now".
RELATIVE = re.compile(
    r"\b(?:\d+|an?)\s+(?:second|minute|hour|day|week|month|year)s?(?:,\s[^<]*?)?\s+(?:ago|from now)\b"
)
ABSOLUTE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")


class RelativeTimes(HTMLParser):
    """Collects each relative time in the text, and whether an enclosing element gives the
    absolute one (``<time datetime=... title=...>``, or any ``title`` holding a date and time)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.bare: list[str] = []
        self.dressed = 0

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def _absolute_around(self) -> bool:
        for tag, attrs in self.stack:
            title = attrs.get("title") or ""
            if tag == "time" and attrs.get("datetime") and ABSOLUTE.search(title):
                return True
            if ABSOLUTE.search(title):
                return True
        return False

    def handle_data(self, data):
        if any(tag in ("script", "style") for tag, _ in self.stack):
            return
        for match in RELATIVE.finditer(data):
            if self._absolute_around():
                self.dressed += 1
            else:
                context = " > ".join(tag for tag, _ in self.stack[-4:])
                self.bare.append(f"{match.group(0)!r} in {context}: {data.strip()[:120]!r}")


def scan(html: str) -> RelativeTimes:
    parser = RelativeTimes()
    parser.feed(html)
    parser.close()
    return parser


def test_the_scanner_finds_a_bare_relative_time_and_accepts_the_tag():
    then = timezone.now() - timedelta(minutes=5)
    assert scan("<td>last heard 5 minutes ago</td>").bare
    assert scan("<td>6 months, 3 weeks ago</td>").bare
    dressed = scan(f"<td>{reltime(then)}</td>")
    assert not dressed.bare and dressed.dressed == 1
    assert re.fullmatch(
        r'<time datetime="[^"]+" title="\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \w+">5\xa0minutes ago</time>',
        str(reltime(then)),
    )


@pytest.fixture
def world(make_host, operator, approver, approver2, dispatched_request, enrollment_token):
    """Two labelled hosts with history, a finished and an open request, a campaign, an action,
    a notification, a webhook: something with a time on every page."""
    old = timezone.now() - timedelta(days=40)
    east = make_host("ocr-east", {"en_ocr_v2.gguf": 2_000, "old_fr_ocr_v1.bin": 1_000})
    west = make_host("ocr-west", {"en_ocr_v2.gguf": 2_000, "old_fr_ocr_v1.bin": 1_000})
    Snapshot.objects.filter(host=east).update(taken_at=old)
    history_factories.snapshot(east, old - timedelta(days=1), {"en_ocr_v1.gguf": 1_500})  # for the diff
    for host in (east, west):
        labels.set_labels(host, {"env": "prod"}, approver)
    labels.save_group("prod", user=approver, selector={"env": "prod"})
    done = dispatched_request(east, ["old_fr_ocr_v1.bin"])
    from models_admin.approvals import workflow

    workflow.record_outcomes(
        done.id,
        [
            ItemOutcome(path=i.path, outcome=Outcome.QUARANTINED, bytes_reclaimed=i.size)
            for i in done.items.all()
        ],
    )
    open_request = workflow.propose(
        host=west, files=list(west.current_snapshot.files.all()), reason="stale", user=operator
    )
    campaign = rollout.propose(
        plan.Spec(
            target_kind=Campaign.Target.SELECTOR,
            selector={"env": "prod"},
            rule_kind=Campaign.Rule.IDENTITY,
            model_name="en_ocr_v2.gguf",
            model_sha256=sha("en_ocr_v2.gguf"),
        ),
        user=operator,
        reason="retire v2",
    )
    HostAction.objects.create(
        request_id=uuid.uuid4().hex,
        host=east,
        kind=HostAction.Kind.INVENTORY,
        state=HostAction.State.DONE,
        asked_by=operator.username,
        asked_at=old,
        finished_at=old + timedelta(minutes=1),
        result="2 files, 3 KB",
    )
    hook = webhooks.add_webhook("chat", "json://127.0.0.1:9/hook", user=approver)
    Notification.objects.create(
        event="host_offline", kind="webhook", webhook=hook, recipient=hook.masked_url, subject="x", body="x"
    )
    Notification.objects.create(
        event="request_waiting", kind="email", user=approver, recipient="a@example.com", subject="y", body="y"
    )
    enrollment_token(host_name="ocr-new")
    snapshots = list(east.snapshots.order_by("taken_at").values_list("id", flat=True))
    return {
        "name": "ocr-east",
        "request_id": str(done.id),
        "open_request_id": str(open_request.id),
        "campaign_id": str(campaign.id),
        "key": "en_ocr_v2.gguf",
        "diff_query": f"?a={snapshots[0]}&b={snapshots[-1]}" if len(snapshots) > 1 else "",
    }


def get_routes() -> list[tuple[str, list[str]]]:
    """(route, argument names) of every dashboard URL, walked from the root URLconf."""
    found: list[tuple[str, list[str]]] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                found.append((prefix + str(p.pattern), list(p.pattern.converters)))

    walk(get_resolver().url_patterns, "/")
    return found


SKIP_PREFIXES = ("/admin/", "/api/", "/accounts/", "/static/", "/metrics", "/health", "/__")


def test_no_page_shows_a_relative_time_without_its_absolute_time(world, client_for, approver):
    client = client_for(approver)
    visited, dressed, bare = [], 0, []
    for route, names in get_routes():
        if route.startswith(SKIP_PREFIXES) or "(?P" in route or "export" in route:
            continue
        urls = [route]
        for name in names:
            if name not in world:
                urls = []
                break
            values = [world[name]] + ([world["open_request_id"]] if name == "request_id" else [])
            urls = [
                u.replace(f"<{conv}:{name}>", v) for u in urls for v in values for conv in ("str", "uuid")
            ]
            urls = [u for u in urls if "<" not in u]
        for url in dict.fromkeys(urls):
            if url.endswith("/diff/"):
                url += world["diff_query"]
            response = client.get(url)
            kind = response.get("Content-Type", "")
            if response.status_code != 200:
                continue
            if kind.startswith("application/json"):
                data = json.loads(response.content)
                if not isinstance(data, dict):
                    continue
                html = data.get("html", "") + "".join(p["html"] for p in (data.get("parts") or {}).values())
            elif kind.startswith("text/html"):
                html = response.content.decode()
            else:
                continue
            result = scan(html)
            visited.append(url)
            dressed += result.dressed
            bare += [f"{url}: {b}" for b in result.bare]
    assert not bare, "relative times without an absolute one:\n" + "\n".join(bare)
    # The walk really went through the pages that show times, and found times on them.
    for must in ("/", "/hosts/ocr-east/", "/requests/", f"/requests/{world['request_id']}/", "/audit/"):
        assert must in visited, visited
    assert f"/campaigns/{world['campaign_id']}/" in visited and "/settings/webhooks/" in visited
    assert f"/hosts/ocr-east/diff/{world['diff_query']}" in visited
    assert dressed >= 20, (dressed, visited)


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no offset"
    return parsed


def test_exports_carry_iso_8601_times_with_their_offset(world, client_for, viewer):
    client = client_for(viewer)
    audit = client.get("/audit/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(audit.streaming_content).decode())))
    assert rows and all(_iso(r["at"]) for r in rows)
    assert {r["action"] for r in rows} >= {
        AuditEvent.Action.REQUEST_PROPOSED,
        AuditEvent.Action.CAMPAIGN_PROPOSED,
    }
    start = (timezone.now() - timedelta(days=1)).date().isoformat()
    deletions = client.get(f"/reports/deletions/export.csv?start={start}&outcomes=all")
    lines = list(csv.DictReader(io.StringIO(b"".join(deletions.streaming_content).decode())))
    assert lines and all(_iso(r["finished_at"]) and _iso(r["decided_at"]) for r in lines)
    payload = json.loads(client.get(f"/reports/deletions/export.json?start={start}&outcomes=all").content)
    [item] = [i for i in payload["deletions"] if i["path"] == "old_fr_ocr_v1.bin"]
    assert _iso(item["finished_at"]) and _iso(item["decided_at"])
