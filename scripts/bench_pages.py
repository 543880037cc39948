#!/usr/bin/env python
"""Benchmark of the dashboard's pages and API lists at 10, 1,000 and 10,000 hosts.

Each host holds 50 current files (10,000 hosts: 500,000 current file rows) drawn from a shared
catalogue of models plus a few of its own, and has a second, older snapshot; some hosts have
errors, are offline, low on disk, pending or have a request waiting for an approver; every
host has audit events. The fleet grows in place from one size to the next (same database) and
every page is fetched as a logged-in approver through Django's test client, so the figures are
server time (no network, no browser), query count and HTML size.

The floor of each page is its own time at 10 hosts, measured in the same run: the goal is a
page that costs the same at any fleet size (ratio <= 3x, <= 150 ms, <= 300 KB, constant
queries).

    python scripts/bench_pages.py                 # 3 runs per page and size
    python scripts/bench_pages.py --quick         # the same sizes, 2 runs
    python scripts/bench_pages.py --screenshots DIR   # also screenshots at 3 and 10,000 hosts

It works in its own database (``--database-url``), created, migrated and dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ingest import create_database, drop_database

SIZES = (10, 1_000, 10_000)
FILES = 50
CATALOGUE = 300  # model names shared by the fleet
OWN = 5  # of each host's files, names only it has
GOALS = {"ms": 150.0, "ratio": 3.0, "kb": 300.0}
# The reports' own goal (issue 11): a one-year report at 10,000 hosts in 300 ms.
REPORTS_MS = 300.0


def setup(database_url: str) -> None:
    import secrets

    os.environ.update(
        DJANGO_SETTINGS_MODULE="ocrdash.settings",
        DATABASE_URL=database_url,
        # DEBUG serves the static files from the source tree (the screenshots need them) and
        # keeps HTTP (no HTTPS redirect); every size is measured the same way.
        DJANGO_DEBUG="true",
        DJANGO_ALLOWED_HOSTS="testserver,127.0.0.1,localhost",
    )
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def grow(start: int, end: int, rng: random.Random) -> None:
    """Add hosts ``start`` .. ``end - 1`` with two snapshots each, requests and audit events."""
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.utils import timezone

    from models_admin.inventory import lifecycle, rollup, summary
    from models_admin.models import AuditEvent, Host, PruneRequest, Snapshot

    now = timezone.now()
    operator, created = User.objects.get_or_create(username="bench-operator")
    if created:
        operator.groups.add(Group.objects.get(name="operator"))
    with transaction.atomic():
        hosts = []
        for i in range(start, end):
            kind = i % 50
            hosts.append(
                Host(
                    name=f"ocr-{i:05d}",
                    hostname=f"ocr-{i:05d}.example",
                    status=Host.Status.PENDING if kind == 7 else Host.Status.ACTIVE,
                    last_seen=now - (timedelta(days=2) if kind in (3, 4) else timedelta(minutes=kind % 5)),
                    model_dir="/srv/ocr/Aspose.AI.LLM/models",
                    model_dir_state=Host.DirState.MISSING if kind == 5 else Host.DirState.OK,
                    last_error="inventory: permission denied" if kind == 6 else "",
                    disk_total=2 * 10**12,
                    disk_free=10**11 if kind == 8 else 10**12 - i * 10**6,
                    agent_version="0.1.0",
                    aspose_version="26.10.0",
                )
            )
        hosts = Host.objects.bulk_create(hosts, batch_size=2000)
        snapshots = []
        for host in hosts:
            for age in (30, 0):
                snapshots.append(
                    Snapshot(
                        host=host,
                        taken_at=now - timedelta(days=age),
                        last_seen_at=now - timedelta(days=age),
                        digest=f"{host.pk:032x}{age:032x}",
                        file_count=FILES,
                        report_id=f"bench-{host.pk}-{age}",
                    )
                )
        Snapshot.objects.bulk_create(snapshots, batch_size=2000)
        buffer = io.StringIO()
        totals = {}
        for snapshot in snapshots:
            i = int(snapshot.host.name[4:])
            names = rng.sample(range(CATALOGUE), FILES - OWN)
            total = 0
            for slot in range(FILES):
                own = slot >= FILES - OWN
                name = f"host{i:05d}_custom{slot}.gguf" if own else f"model_{names[slot]:03d}.gguf"
                size = 10**8 + (i * 7919 + slot) % 10**6 if own else 10**8 + names[slot] * 1000
                sha = hashlib.sha256(name.encode()).hexdigest()
                total += size
                path = f"family{slot % 7}/{name}"
                row = (
                    snapshot.pk,
                    "llm",
                    path,
                    name,
                    size,
                    1_700_000_000_000_000_000 + slot,
                    sha,
                    slot == 0,
                    False,
                )
                buffer.write("\t".join(map(str, row)) + "\n")
            totals[snapshot.pk] = total
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY models_admin_modelfile (snapshot_id, store, path, name, size, mtime_ns, sha256,"
                " known_to_aspose, is_symlink) FROM STDIN"
            ) as copy:
                copy.write(buffer.getvalue())
            cursor.execute(
                "UPDATE models_admin_snapshot s SET total_bytes = t.total FROM"
                " (SELECT snapshot_id, sum(size) AS total FROM models_admin_modelfile"
                "  WHERE snapshot_id = ANY(%s) GROUP BY snapshot_id) t WHERE s.id = t.snapshot_id",
                [list(totals)],
            )
            cursor.execute(
                "UPDATE models_admin_host h SET current_snapshot_id = s.id, file_count = s.file_count,"
                " total_bytes = s.total_bytes FROM models_admin_snapshot s"
                " WHERE s.host_id = h.id AND s.report_id = 'bench-' || h.id || '-0' AND h.id = ANY(%s)",
                [[h.pk for h in hosts]],
            )
        PruneRequest.objects.bulk_create(
            PruneRequest(
                host=host,
                reason="old models",
                requested_by=operator,
                expires_at=now + timedelta(days=3),
                created_at=now - timedelta(hours=k % 48),
            )
            for k, host in enumerate(hosts)
            if k % 20 == 0
        )
        AuditEvent.objects.bulk_create(
            (
                AuditEvent(
                    at=now - timedelta(minutes=j * 60 + k % 60),
                    actor=f"agent:{host.name}",
                    action=AuditEvent.Action.REPORT_INGESTED,
                    host=host.name,
                    details={"files": FILES},
                )
                for k, host in enumerate(hosts)
                for j in range(5)
            ),
            batch_size=5000,
        )
    # What ingest keeps with every new snapshot, built here in one go for the rows COPY wrote.
    summary.rebuild()
    rollup.rebuild()
    lifecycle.rebuild(host.pk for host in hosts)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def pages() -> dict[str, str]:
    """Label -> path of every page and API list measured."""
    from django.utils import timezone

    from models_admin.models import Host, ModelSummary, PruneRequest

    host = Host.objects.order_by("name").first()
    assert host is not None
    request = PruneRequest.objects.order_by("created_at").first()
    assert request is not None
    one_year_ago = (timezone.localdate() - timedelta(days=364)).isoformat()
    a_month_ago = (timezone.localtime() - timedelta(days=15)).strftime("%Y-%m-%dT%H:%M")
    popular = ModelSummary.objects.order_by("-copies").values_list("name", flat=True).first()
    return {
        "fleet /": "/",
        "fleet poller": "/fleet/rows/",
        "fleet sorted by size": "/?sort=-size",
        "fleet page 3": "/?page=3",
        "fleet search": "/?q=ocr-00",
        "models index": "/models/",
        "model detail": f"/models/{popular}/",
        "model lifecycle": f"/models/{popular}/lifecycle/",
        "host detail": f"/hosts/{host.name}/",
        "host timeline": f"/hosts/{host.name}/timeline/",
        "host timeline ?at=": f"/hosts/{host.name}/timeline/?at={a_month_ago}",
        "requests": "/requests/",
        "request detail": f"/requests/{request.id}/",
        "campaigns": "/campaigns/",
        "groups": "/groups/",
        "audit": "/audit/",
        "audit by host": f"/audit/?host={host.name}",
        "audit by action": "/audit/?action=request_approved",
        "rejected reports": "/audit/rejected-reports/",
        "reports (90 days)": "/reports/",
        "reports (1 year)": f"/reports/?start={one_year_ago}",
        "reports host search": "/reports/hosts.json?q=ocr-01",
        "deletions (1 year)": f"/reports/deletions/?start={one_year_ago}",
        "settings": "/settings/",
        "api hosts": "/api/hosts/",
        "api requests": "/api/prune-requests/",
        "api audit": "/api/audit/",
        "api groups": "/api/groups/",
        "api campaigns": "/api/campaigns/",
    }


# The pages saved by --screenshots (1280 px wide, at the smallest and the largest fleet).
SCREENSHOTS = (
    "fleet /",
    "models index",
    "model detail",
    "model lifecycle",
    "requests",
    "audit",
    "reports (1 year)",
    "deletions (1 year)",
    "settings",
)

# The audit pages measured again after a simulated year (``a_year_of_audit``).
AUDIT_PAGES = ("audit", "audit by host", "audit by action", "api audit")


def a_year_of_audit(hosts: int, days: int = 365) -> int:
    """A year of the audit trail of ``hosts`` hosts reporting hourly, as ingest keeps it.

    An unchanged inventory writes no audit event (README, "What stays small"), so a year of
    hourly reports leaves one event per host per day when each host's inventory changes once
    a day (one report in 24), plus the people's decisions: 200 a day. Written by one
    INSERT ... SELECT over generate_series, so building 3.7 million rows takes a minute, not
    the hours real ingest would.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO models_admin_auditevent
                (at, actor, action, host, object_type, object_id, details)
            SELECT now() - make_interval(days => d, secs => h * 8.0),
                   'agent:ocr-' || lpad(h::text, 5, '0'), 'report_ingested',
                   'ocr-' || lpad(h::text, 5, '0'), 'snapshot', (d * %(hosts)s + h)::text,
                   jsonb_build_object('files', 50, 'added', 1, 'removed', 1)
            FROM generate_series(1, %(days)s) d, generate_series(0, %(hosts)s - 1) h
            """,
            {"hosts": hosts, "days": days},
        )
        events = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO models_admin_auditevent
                (at, actor, action, host, object_type, object_id, details)
            SELECT now() - make_interval(days => d, mins => k * 7),
                   'bench-operator', 'request_approved',
                   'ocr-' || lpad(((d * 200 + k) %% %(hosts)s)::text, 5, '0'),
                   'prune_request', md5((d * 200 + k)::text), jsonb_build_object('comment', 'checked')
            FROM generate_series(1, %(days)s) d, generate_series(0, 199) k
            """,
            {"hosts": hosts, "days": days},
        )
        events += cursor.rowcount
        # VACUUM as autovacuum would have over the year: rows a year old are frozen, their hint
        # bits set. Left to the pages, the first read of 3.7 million fresh rows sets them (a
        # write per page read), and that first read is then a measure of the bulk insert.
        cursor.execute("VACUUM (ANALYZE) models_admin_auditevent")
    return events


def measure(client, path: str, runs: int) -> tuple[list[float], int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
    return times, len(queries), len(response.content)


class LiveServer:
    """The dashboard served on 127.0.0.1 for the screenshots (wsgiref in a thread)."""

    def __init__(self) -> None:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from django.core.wsgi import get_wsgi_application

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args) -> None:
                pass

        self.server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


# The tables wider than their box (cut off, or scrolling, at 1280 px), by id or class. Only
# tables the page shows count: one in a closed <details> still has its full scrollWidth (the
# browser lays out the hidden content), and one under display: none has no box at all.
CLIPPED_TABLES_JS = """() => [...document.querySelectorAll('table')].filter(t => {
    if (t.offsetParent === null || !t.checkVisibility()) return false;
    const box = t.closest('.table-responsive') || t.parentElement;
    return t.scrollWidth > box.clientWidth + 1;
}).map(t => t.id || t.className)"""


def screenshots(folder: Path, size: int, paths: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    server = LiveServer()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/accounts/login/")
            page.fill("input[name=username]", "bench-viewer")
            page.fill("input[name=password]", "bench-viewer-pass-1")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_load_state("networkidle")
            for label in SCREENSHOTS:
                page.goto(server.url + paths[label])
                page.wait_for_load_state("networkidle")
                name = "".join(c if c.isalnum() else "-" for c in label).strip("-")
                page.screenshot(path=str(folder / f"{name}-{size}-hosts.png"), full_page=True)
                clipped = page.evaluate(CLIPPED_TABLES_JS)
                if clipped:
                    print(f"  {label} at {size} hosts: table wider than the page at 1280 px: {clipped}")
            browser.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same sizes, fewer runs")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per page and size (default 3, --quick 2)"
    )
    parser.add_argument("--screenshots", type=Path, default=None, help="a folder for screenshots")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ocrdash_bench_pages")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 3)

    create_database(args.database_url)
    try:
        setup(args.database_url)
        from django.contrib.auth.models import Group, User
        from django.test import Client

        viewer = User.objects.create(username="bench-viewer")
        viewer.set_password("bench-viewer-pass-1")  # the screenshots log in through the form
        viewer.save()
        viewer.groups.add(*Group.objects.filter(name__in=["viewer", "approver"]))
        rng = random.Random(11)
        results: dict[int, dict[str, tuple[list[float], int, int]]] = {}
        built = 0
        if args.screenshots:
            # The pages as a small site sees them: 3 hosts, before the fleet grows to 10.
            grow(0, 3, rng)
            built = 3
            screenshots(args.screenshots, 3, pages())
        for size in SIZES:
            t0 = time.perf_counter()
            grow(built, size, rng)
            built = size
            client = Client()
            client.force_login(viewer, backend="django.contrib.auth.backends.ModelBackend")
            paths = pages()
            for path in paths.values():
                client.get(path)  # warm: templates compiled, caches filled
            results[size] = {label: measure(client, path, runs) for label, path in paths.items()}
            one, five, _ = os.getloadavg()
            print(
                f"{size} hosts built in {time.perf_counter() - t0:.0f} s, measured"
                f" (load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores)"
            )
            if args.screenshots and size == SIZES[-1]:
                screenshots(args.screenshots, size, paths)
        small, large = SIZES[0], SIZES[-1]
        t0 = time.perf_counter()
        events = a_year_of_audit(large)
        audit_paths = {label: paths[label] for label in AUDIT_PAGES}
        for path in audit_paths.values():
            client.get(path)
        year = {label: measure(client, path, runs) for label, path in audit_paths.items()}
        print(
            f"a year of audit events written ({events:,} rows) in {time.perf_counter() - t0:.0f} s, measured"
        )
        print(
            f"\n{'page':<22} {'ms at ' + str(large) + ' (min/med)':>22}"
            f" {'floor: ' + str(small) + ' hosts':>16} {'ratio':>7} {'ms at 1k':>9}"
            f" {'queries 10/1k/10k':>18} {'KB at 10k':>10}"
        )
        worst_ratio, worst_ms, max_kb = 0.0, 0.0, 0.0
        for label in results[small]:
            floor, mid, big = results[small][label], results[SIZES[1]][label], results[large][label]
            ratio = statistics.median(big[0]) / statistics.median(floor[0])
            worst_ratio, worst_ms = max(worst_ratio, ratio), max(worst_ms, statistics.median(big[0]))
            max_kb = max(max_kb, big[2] / 1024)
            flag = (
                ""
                if ratio <= GOALS["ratio"]
                and statistics.median(big[0])
                <= (REPORTS_MS if label.startswith("reports (") else GOALS["ms"])
                and big[2] / 1024 <= GOALS["kb"]
                else "  <- over a goal"
            )
            print(
                f"{label:<22} {min(big[0]):9.1f} / {statistics.median(big[0]):9.1f}"
                f" {statistics.median(floor[0]):16.1f} {ratio:6.2f}x {statistics.median(mid[0]):9.1f}"
                f" {floor[1]:>6}/{mid[1]}/{big[1]:<6} {big[2] / 1024:9.0f}{flag}"
            )
        print(
            f"\n{'after a year, 10k hosts':<24} {'ms (min/med)':>20} {'floor: before':>14} {'ratio':>7}"
            f" {'queries':>8} {'KB':>5}"
        )
        audit_year_ms = 0.0
        for label, (times, count, size) in year.items():
            before = statistics.median(results[large][label][0])
            ms = statistics.median(times)
            audit_year_ms = max(audit_year_ms, ms)
            flag = "" if ms <= GOALS["ms"] else "  <- over a goal"
            print(
                f"{label:<24} {min(times):9.1f} / {ms:9.1f} {before:14.1f} {ms / before:6.2f}x"
                f" {count:>8} {size / 1024:5.0f}{flag}"
            )
        print(
            f"SUMMARY worst_ratio_10k_vs_10={worst_ratio:.2f} worst_ms_10k={worst_ms:.0f}"
            f" max_html_kb={max_kb:.0f} audit_after_a_year_ms={audit_year_ms:.0f}"
            f" reports_1y_ms_10k={statistics.median(results[large]['reports (1 year)'][0]):.0f}"
        )
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)


if __name__ == "__main__":
    main()
