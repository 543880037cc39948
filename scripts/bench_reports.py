#!/usr/bin/env python
"""Benchmark of the history pages on a long history in PostgreSQL.

Builds N hosts x D days of daily inventories (each day one file of each host is replaced,
so every day is a distinct snapshot: the worst case for the history, since identical
inventories are not stored again) with F files each, plus a prune request per host and week,
then prints the time and the query count of each report function and page.

    python scripts/bench_reports.py                       # 50 hosts x 730 days x 50 files
    python scripts/bench_reports.py --hosts 5 --days 60   # a quick run
    python scripts/bench_reports.py --reuse               # skip the build, time again

It works in its own database (--database-url, default ocrdash_bench on 127.0.0.1), which it
creates and migrates; it never touches the dashboard's database.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _prepare_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build(hosts: int, days: int, files: int) -> None:
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.utils import timezone

    from models_admin.inventory import lifecycle, rollup
    from models_admin.models import AuditEvent, Host, ModelFile, PruneItem, PruneRequest, Snapshot

    with connection.cursor() as cur:
        # Faster than row-by-row deletes and leaves the audit trigger alone.
        cur.execute(
            "TRUNCATE models_admin_pruneitem, models_admin_prunerequest, models_admin_modelfile, "
            "models_admin_snapshot, models_admin_host CASCADE"
        )
    operator, _ = User.objects.get_or_create(username="bench-operator")
    approver, _ = User.objects.get_or_create(username="bench-approver")
    operator.groups.add(Group.objects.get(name="operator"))
    approver.groups.add(Group.objects.get(name="approver"), Group.objects.get(name="viewer"))

    start = timezone.now().replace(hour=3, minute=0, second=0, microsecond=0) - timedelta(days=days)
    for h in range(hosts):
        t0 = time.perf_counter()
        with transaction.atomic():
            host = Host.objects.create(
                name=f"ocr-{h:03d}", status=Host.Status.ACTIVE, model_dir="/srv/models"
            )
            current = {f"models/m{i:03d}_v0.gguf": 100_000_000 + i * 1_000 + h for i in range(files)}
            snapshots, rows = [], []
            for d in range(days):
                # Day d replaces model (d % files) with its next version.
                slot = d % files
                current.pop(next(p for p in current if p.startswith(f"models/m{slot:03d}_")))
                current[f"models/m{slot:03d}_v{d + 1}.gguf"] = 100_000_000 + slot * 1_000 + d
                taken = start + timedelta(days=d)
                snapshots.append(
                    Snapshot(
                        host=host,
                        taken_at=taken,
                        last_seen_at=taken + timedelta(hours=12),
                        seen_count=2,
                        digest=_sha(f"{h}:{d}"),
                        file_count=len(current),
                        total_bytes=sum(current.values()),
                    )
                )
                rows.append(dict(current))
            Snapshot.objects.bulk_create(snapshots, batch_size=2000)
            # COPY, not bulk_create: 36,500 file rows per host, 1.8 million in all.
            buffer = io.StringIO()
            for snap, inventory in zip(snapshots, rows, strict=True):
                for path, size in inventory.items():
                    name = path.rsplit("/", 1)[-1]
                    buffer.write(f"{snap.pk}\tllm\t{path}\t{name}\t{size}\t{size}\t{_sha(path)}\tf\tf\n")
            with (
                connection.cursor() as cur,
                cur.copy(
                    f"COPY {ModelFile._meta.db_table} (snapshot_id, store, path, name, size, mtime_ns,"
                    " sha256, known_to_aspose, is_symlink) FROM STDIN"
                ) as copy,
            ):
                copy.write(buffer.getvalue())
            host.current_snapshot = snapshots[-1]
            host.file_count, host.total_bytes = snapshots[-1].file_count, snapshots[-1].total_bytes
            host.save()
            requests, items = [], []
            weeks = days // 7
            for week in range(weeks):
                created = start + timedelta(days=7 * week, hours=5 + h % 12)
                # Some variety for the requests chart: rejections, expiries, and the last
                # weeks' requests still waiting for an approver.
                if week >= weeks - 1 - h % 3:
                    state, decided = PruneRequest.State.PROPOSED, None
                elif (week + h) % 6 == 0:
                    state, decided = PruneRequest.State.REJECTED, created + timedelta(hours=30)
                elif (week + h) % 9 == 0:
                    state, decided = PruneRequest.State.EXPIRED, None
                else:
                    state, decided = PruneRequest.State.COMPLETED, created + timedelta(hours=1)
                done = state == PruneRequest.State.COMPLETED
                request = PruneRequest(
                    host=host,
                    state=state,
                    reason="superseded version",
                    requested_by=operator,
                    decided_by=approver if decided else None,
                    decided_at=decided,
                    decision_comment="checked: no job uses it" if done else "",
                    created_at=created,
                    expires_at=created + timedelta(days=3),
                    finished_at=None if state == PruneRequest.State.PROPOSED else created + timedelta(days=3),
                    bytes_reclaimed=(1 + (week + h) % 3) * 100_000_000 if done else 0,
                )
                requests.append(request)
                items += [
                    PruneItem(
                        request=request,
                        path=f"models/old_{week}_{k}.gguf",
                        size=100_000_000,
                        mtime_ns=0,
                        sha256=_sha(f"{h}:{week}:{k}"),
                        outcome="quarantined" if done else "pending",
                        bytes_reclaimed=100_000_000 if done else 0,
                        finished_at=created + timedelta(hours=2) if done else None,
                    )
                    for k in range(1 + (week + h) % 3)
                ]
            PruneRequest.objects.bulk_create(requests)
            PruneItem.objects.bulk_create(items, batch_size=10_000)
        took = time.perf_counter() - t0
        print(f"  built {host.name}: {days} snapshots, {days * files} file rows in {took:.1f}s")
    AuditEvent.record(
        AuditEvent.Action.SETTINGS_CHANGED, actor="bench", setting="bench", before=None, after=None
    )
    rollup.rebuild()  # the reports' daily rollup, which ingest keeps, for the rows COPY wrote
    lifecycle.rebuild()  # and each model's sightings, which ingest keeps too
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


TIMES: dict[str, float] = {}


def measure(label: str, fn) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fn()  # warm caches, as a second visitor would
    with CaptureQueriesContext(connection) as queries:
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
    status = getattr(result, "status_code", "")
    TIMES[label] = elapsed * 1000
    print(f"  {label:<48} {elapsed * 1000:8.1f} ms  {len(queries):3d} queries  {status}")


def run(days: int) -> None:
    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from models_admin.inventory import compaction, reports
    from models_admin.models import Host, ModelFile, Snapshot

    host = Host.objects.order_by("name").first()
    today = timezone.localdate()
    print(
        f"history: {Host.objects.count()} hosts, {Snapshot.objects.count()} snapshots, "
        f"{ModelFile.objects.count()} file rows"
    )
    print("functions:")
    for span in (90, 365, 730):
        start = today - timedelta(days=span - 1)
        measure(f"disk_per_day, {span} days, all hosts", lambda s=start: reports.disk_per_day(s, today))
    q_start = today - timedelta(days=89)
    measure("reclaimed_per_week, 90 days", lambda: reports.reclaimed_per_week(q_start, today))
    measure("requests_per_week, 90 days", lambda: reports.requests_per_week(q_start, today))
    year = reports.DeletionFilter(today - timedelta(days=364), today)
    measure(
        "deletions + totals, 1 year",
        lambda: (list(reports.deletions(year)), reports.deletion_totals(reports.deletions(year))),
    )
    page = list(host.snapshots.order_by("-taken_at", "-id")[:50])
    measure("timeline_steps, one page of 50", lambda: reports.timeline_steps(page))
    measure(
        "snapshot_at, a year ago", lambda: reports.snapshot_at(host, timezone.now() - timedelta(days=365))
    )
    measure("model_lifecycle by name", lambda: reports.model_lifecycle("m001_v0.gguf"))

    client = Client()
    client.force_login(User.objects.get(username="bench-approver"))
    print("pages:")
    measure("/reports/ (90 days)", lambda: client.get("/reports/"))
    measure(
        "/reports/?start=<1 year ago>", lambda: client.get(f"/reports/?start={today - timedelta(days=364)}")
    )
    measure("/reports/deletions/ (90 days)", lambda: client.get("/reports/deletions/"))
    measure(
        "/reports/deletions/export.json (1 year)",
        lambda: client.get(f"/reports/deletions/export.json?start={today - timedelta(days=364)}"),
    )
    measure(f"/hosts/{host.name}/timeline/", lambda: client.get(f"/hosts/{host.name}/timeline/"))
    measure(
        f"/hosts/{host.name}/timeline/?page=10", lambda: client.get(f"/hosts/{host.name}/timeline/?page=10")
    )
    measure(
        f"/hosts/{host.name}/timeline/?at=<1 year ago>",
        lambda: client.get(f"/hosts/{host.name}/timeline/?at={today - timedelta(days=365)}T12:00"),
    )
    measure("/models/m001_v0.gguf/lifecycle/", lambda: client.get("/models/m001_v0.gguf/lifecycle/"))
    print("compaction (30/180 days), one host:")
    t0 = time.perf_counter()
    counts = compaction.compact_host(host.id, timezone.now(), compaction.Retention(30, 180))
    took = time.perf_counter() - t0
    print(f"  {host.name}: {counts} in {took:.2f}s (run without --reuse to rebuild the full history)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--reuse", action="store_true", help="keep the history already built")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ocrdash_bench")
    args = parser.parse_args()

    _prepare_database(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrdash.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
    # The settings refuse to start without a real key; the test client speaks plain HTTP.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    # The pages load static files by name: DEBUG finds them in the source tree (no manifest).
    os.environ.setdefault("DJANGO_DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not args.reuse:
        print(f"building {args.hosts} hosts x {args.days} days x {args.files} files ...")
        t0 = time.perf_counter()
        build(args.hosts, args.days, args.files)
        print(f"built in {time.perf_counter() - t0:.0f}s")
    run(args.days)
    functions = [ms for label, ms in TIMES.items() if not label.startswith("/")]
    pages = [ms for label, ms in TIMES.items() if label.startswith("/")]
    print(f"SUMMARY worst_function_ms={max(functions):.0f} worst_page_ms={max(pages):.0f}")


if __name__ == "__main__":
    main()
