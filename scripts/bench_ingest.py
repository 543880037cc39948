#!/usr/bin/env python
"""Benchmark of report ingest: direct, through Celery with one and two worker processes.

Every report is a *new* signed 50-file inventory (a new snapshot and 50 file rows: the
expensive case) of one of ``--hosts`` enrolled hosts, signed by the agent's own code
(``workers.signing.envelope.sign``). In the same run it measures

- ``ingest_report`` called directly, against the floor: raw psycopg writing the same rows
  (received report, the files' use, the day's disk sample and forecast window, snapshot, file
  rows, the models summary, host update, audit event) in one transaction per report, each
  set of rows in one statement;
- the real Celery path: reports published to Redis and stored by ``celery -A ocrdash worker``
  with one worker process, against direct ingest;
- two worker processes against one.

It works in its own database (``--database-url``), created, migrated and dropped, and a
queue of its own on ``--broker-url``; it never touches the dashboard's database.

    python scripts/bench_ingest.py            # 3 runs of 300 reports per figure
    python scripts/bench_ingest.py --quick    # the same sizes, 2 runs
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FILES = 50


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts._replace(path="/postgres").geturl(), parts.path.lstrip("/")


def create_database(url: str) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(database_url: str, broker_url: str) -> None:
    """Production settings on the benchmark's database (and a random key for this run only)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "ocrdash.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class Fleet:
    """Enrolled hosts and a generator of new signed inventories for them."""

    def __init__(self, hosts: int) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from models_admin.models import Host, HostKey
        from workers.signing.keys import key_fingerprint, public_key_text

        self.keys: dict[str, Ed25519PrivateKey] = {}
        for i in range(hosts):
            name = f"bench-{i:05d}"
            key = Ed25519PrivateKey.generate()
            host = Host.objects.create(name=name, status=Host.Status.ACTIVE, model_dir="/srv/models")
            HostKey.objects.create(
                host=host, public_key=public_key_text(key), fingerprint=key_fingerprint(key)
            )
            self.keys[name] = key
        self.round = 0

    def reports(self, count: int) -> list[dict]:
        """``count`` new inventories, round-robin over the hosts, each with 50 new file rows."""
        from django.utils import timezone

        from workers.schema import INGEST_TASK, FileEntry, HostFacts, InventoryReport, ModelDirState
        from workers.signing.envelope import sign

        names = list(self.keys)
        out = []
        for n in range(count):
            self.round += 1
            host = names[n % len(names)]
            files = [
                FileEntry(
                    path=f"models/family{i:02d}/model{i:02d}_r{self.round}.gguf",
                    size=100_000_000 + i * 4096 + self.round,
                    mtime_ns=1_700_000_000_000_000_000 + self.round * 1_000 + i,
                    sha256=f"{self.round:032x}{i:032x}",
                    known_to_aspose=i == 0,
                )
                for i in range(FILES)
            ]
            report = InventoryReport(
                host=host,
                agent_version="bench",
                facts=HostFacts(
                    hostname=host,
                    model_dir="/srv/models",
                    model_dir_state=ModelDirState.OK,
                    disk_total=1 << 40,
                    disk_free=(1 << 39) - self.round,
                ),
                files=files,
            )
            body = report.to_json()
            body["sent_at"] = timezone.now().isoformat()
            out.append(sign(body, self.keys[host], signer=host, purpose=INGEST_TASK))
        return out


# ---------------------------------------------------------------- the floor


def floor_ingest(conn, report: dict) -> None:
    """The same rows ingest writes for a new inventory, in one transaction, nothing else.

    Received report, the files' use (upserted, the old files' rows removed), the day's disk
    sample and the forecast's window read, snapshot, file rows, the models summary (the old
    and new files' tallies added, names no host holds any more removed), the models' sightings
    per host (the keys that came or went), the reports' daily rollup, host update, audit
    event. Each set of rows in one statement, as few round trips as raw SQL allows; no
    validation, no signature check, no digest, no ORM.
    """
    from psycopg.types.json import Jsonb

    from models_admin.inventory.lifecycle import _SNAPSHOT_CHANGED_SQL as SIGHTINGS_SQL

    now = time.time()
    files = report["files"]
    paths = [f["path"] for f in files]
    stores = [f.get("store", "llm") for f in files]
    names = [p.rsplit("/", 1)[-1] for p in paths]
    sizes = [f["size"] for f in files]
    with conn.transaction():
        cur = conn.cursor()
        cur.execute(
            "SELECT id, current_snapshot_id FROM models_admin_host WHERE name = %s FOR UPDATE",
            [report["host"]],
        )
        host_id, old_snapshot = cur.fetchone()
        cur.execute(
            "INSERT INTO models_admin_receivedreport (received_at, report_id, host_name, host_id, kind,"
            " status, reason, payload) VALUES (to_timestamp(%s), %s, %s, %s, %s, 'accepted', '', NULL)",
            [now, report["report_id"], report["host"], host_id, "inventory"],
        )
        cur.execute(
            "WITH new (store, path, atime_ns) AS"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])),"
            " gone AS (DELETE FROM models_admin_fileusage u WHERE u.host_id = %s AND NOT EXISTS"
            " (SELECT 1 FROM new WHERE new.store = u.store AND new.path = u.path))"
            " INSERT INTO models_admin_fileusage (host_id, store, path, atime_ns, atime_mode, open_by,"
            " last_open_at, last_open_by, checked_at, watched_since)"
            " SELECT %s, store, path, atime_ns, 'unknown', '[]', NULL, '', to_timestamp(%s), to_timestamp(%s)"
            " FROM new ON CONFLICT (host_id, store, path) DO UPDATE SET atime_ns = excluded.atime_ns,"
            " checked_at = excluded.checked_at",
            [stores, paths, [f.get("atime_ns") for f in files], host_id, host_id, now, now],
        )
        cur.execute(
            "WITH up AS (INSERT INTO models_admin_disksample (host_id, day, disk_free, disk_total, at)"
            " VALUES (%s, current_date, %s, %s, to_timestamp(%s)) ON CONFLICT (host_id, day) DO UPDATE"
            " SET disk_free = excluded.disk_free, at = excluded.at RETURNING day, disk_free)"
            " SELECT day, disk_free FROM up UNION ALL (SELECT day, disk_free FROM models_admin_disksample"
            " WHERE host_id = %s AND day <> current_date ORDER BY day DESC LIMIT 14)",
            [host_id, report["facts"]["disk_free"], report["facts"]["disk_total"], now, host_id],
        )
        cur.fetchall()
        cur.execute(
            "INSERT INTO models_admin_snapshot (host_id, taken_at, last_seen_at, seen_count, digest,"
            " file_count, total_bytes, model_dir_state, report_id)"
            " VALUES (%s, to_timestamp(%s), to_timestamp(%s), 1, %s, %s, %s, 'ok', %s) RETURNING id",
            [host_id, now, now, "0" * 64, len(files), sum(sizes), report["report_id"]],
        )
        snapshot_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO models_admin_modelfile (snapshot_id, path, name, size, mtime_ns, sha256,"
            " known_to_aspose, is_symlink, store) SELECT %s, * FROM unnest(%s::text[], %s::text[],"
            " %s::bigint[], %s::bigint[], %s::text[], %s::boolean[], %s::boolean[], %s::text[])",
            [
                snapshot_id, paths, names, sizes, [f["mtime_ns"] for f in files],
                [f["sha256"] or "" for f in files], [f["known_to_aspose"] for f in files],
                [f["is_symlink"] for f in files], stores,
            ],
        )  # fmt: skip
        cur.execute(FLOOR_SUMMARY_SQL, {"old": old_snapshot, "new": snapshot_id})
        gone = sorted({name for name, copies in cur.fetchall() if copies <= 0})
        if gone:
            cur.execute(
                "WITH n AS (DELETE FROM models_admin_modelsummary WHERE name = ANY(%s) AND copies <= 0)"
                " DELETE FROM models_admin_modelversion WHERE name = ANY(%s) AND copies <= 0",
                [gone, gone],
            )
        # The sightings' one statement is ingest's own (inventory/lifecycle.py): it already is
        # the set-based SQL a floor would write.
        cur.execute(SIGHTINGS_SQL, {"old": old_snapshot, "new": snapshot_id})
        cur.execute(
            "INSERT INTO models_admin_diskday (zone, day, shard, bytes_change, files_change)"
            " VALUES ('UTC', current_date, %s, %s, %s) ON CONFLICT (zone, day, shard) DO UPDATE SET"
            " bytes_change = models_admin_diskday.bytes_change + excluded.bytes_change,"
            " files_change = models_admin_diskday.files_change + excluded.files_change",
            [host_id % 8, sum(sizes), len(files)],
        )
        cur.execute(
            "UPDATE models_admin_host SET last_seen = to_timestamp(%s), current_snapshot_id = %s,"
            " file_count = %s, total_bytes = %s, disk_free = %s WHERE id = %s",
            [now, snapshot_id, len(files), sum(sizes), report["facts"]["disk_free"], host_id],
        )
        cur.execute(
            "INSERT INTO models_admin_auditevent (at, actor, action, host, object_type, object_id, details)"
            " VALUES (to_timestamp(%s), %s, 'report_ingested', %s, '', '', %s)",
            [now, "agent:" + report["host"], report["host"], Jsonb({"report_id": report["report_id"]})],
        )


# The models summary's deltas between the host's old and new files, added in one statement.
FLOOR_SUMMARY_SQL = """
WITH rows AS (
    SELECT name, sha256, size, known_to_aspose AS known, 1 AS sign FROM models_admin_modelfile
    WHERE snapshot_id = %(new)s
    UNION ALL
    SELECT name, sha256, size, known_to_aspose, -1 FROM models_admin_modelfile WHERE snapshot_id = %(old)s
), n AS (
    INSERT INTO models_admin_modelsummary AS t (name, hosts, copies, bytes, known)
    SELECT name, bool_or(sign > 0)::int - bool_or(sign < 0)::int, sum(sign), sum(sign * size),
           sum(sign * known::int) FROM rows GROUP BY name ORDER BY name COLLATE "C"
    ON CONFLICT (name) DO UPDATE SET hosts = t.hosts + excluded.hosts, copies = t.copies + excluded.copies,
        bytes = t.bytes + excluded.bytes, known = t.known + excluded.known
    RETURNING name, copies
), v AS (
    INSERT INTO models_admin_modelversion AS t (name, sha256, hosts, copies, bytes)
    SELECT name, sha256, bool_or(sign > 0)::int - bool_or(sign < 0)::int, sum(sign), sum(sign * size)
    FROM rows GROUP BY name, sha256 ORDER BY name COLLATE "C", sha256 COLLATE "C"
    ON CONFLICT (name, sha256) DO UPDATE SET hosts = t.hosts + excluded.hosts,
        copies = t.copies + excluded.copies, bytes = t.bytes + excluded.bytes
    RETURNING name, copies
)
SELECT name, copies FROM n UNION ALL SELECT name, copies FROM v
"""


def run_floor(database_url: str, reports: list[dict]) -> float:
    import psycopg

    with psycopg.connect(database_url) as conn:
        t0 = time.perf_counter()
        for report in reports:
            floor_ingest(conn, report)
        return len(reports) / (time.perf_counter() - t0)


def run_direct(reports: list[dict]) -> float:
    from models_admin.ingest import ingest_report

    t0 = time.perf_counter()
    for report in reports:
        result = ingest_report(report)
        if result.status != "accepted":
            raise SystemExit(f"direct ingest did not accept a report: {result}")
    return len(reports) / (time.perf_counter() - t0)


# ---------------------------------------------------------------- the Celery path


class Workers:
    """``celery -A ocrdash worker`` with ``processes`` worker processes on a queue of its own."""

    def __init__(
        self, processes: int, database_url: str, broker_url: str, queue: str, log: Path, batch: int = 0
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="ocrdash.settings",
            DJANGO_SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=broker_url,
        )
        if batch:  # else the settings' default (OCRDASH_INGEST_BATCH)
            env["OCRDASH_INGEST_BATCH"] = str(batch)
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "ocrdash", "worker", "-Q", queue),
                    *("-c", str(processes), "-n", f"bench-{uuid.uuid4().hex[:8]}@%h"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def publish(reports: list[dict], queue: str) -> None:
    from ocrdash.celery import app
    from workers.schema import INGEST_TASK

    with app.producer_or_acquire() as producer:
        for report in reports:
            app.send_task(INGEST_TASK, args=[report], queue=queue, producer=producer)


def wait_stored(report_ids: list[str], timeout: float, workers: Workers) -> float:
    """Time (perf_counter) at which every report id is stored; fails after ``timeout`` seconds."""
    from django.db import connection

    from models_admin.models import ReceivedReport

    deadline = time.monotonic() + timeout
    wanted = len(report_ids)
    # One connection in autocommit (each count sees what committed), polled every 50 ms: a new
    # connection per poll made PostgreSQL start a backend 50 times a second, CPU taken from
    # the workers being measured.
    while time.monotonic() < deadline:
        done = ReceivedReport.objects.filter(report_id__in=report_ids).count()
        if done >= wanted:
            return time.perf_counter()
        if workers.process.poll() is not None:
            raise SystemExit(f"the worker ended:\n{workers.log.read_text()[-3000:]}")
        time.sleep(0.05)
    connection.close()
    raise SystemExit(f"timed out: {done} of {wanted} reports stored\n{workers.log.read_text()[-3000:]}")


def run_celery(workers: Workers, fleet: Fleet, count: int, queue: str) -> float:
    reports = fleet.reports(count)
    t0 = time.perf_counter()
    publish(reports, queue)
    t1 = wait_stored([r["report_id"] for r in reports], timeout=60 + count, workers=workers)
    return count / (t1 - t0)


def celery_rates(processes: int, runs: int, count: int, fleet: Fleet, args, log_dir: Path) -> list[float]:
    queue = f"ocrdash.ingest.bench-{uuid.uuid4().hex[:8]}"
    workers = Workers(
        processes, args.database_url, args.broker_url, queue, log_dir / f"worker-{processes}.log", args.batch
    )
    try:
        run_celery(workers, fleet, 10 * processes, queue)  # warm-up: started, connected, imported
        return [run_celery(workers, fleet, count, queue) for _ in range(runs)]
    finally:
        workers.stop()
        from kombu import Connection

        with Connection(args.broker_url) as conn:
            conn.SimpleQueue(queue).queue.delete()


# ---------------------------------------------------------------- output


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores"


def line(label: str, ours: list[float], floor: list[float], unit: str = "reports/s") -> float:
    """Print ours / floor / ratio (best and median of the runs); returns the median ratio."""
    ratio_best = max(ours) / max(floor)
    ratio_median = statistics.median(ours) / statistics.median(floor)
    print(
        f"{label:<34} ours {max(ours):7.1f} / {statistics.median(ours):7.1f}  "
        f"floor {max(floor):7.1f} / {statistics.median(floor):7.1f} {unit}  "
        f"ratio {ratio_best:.2f}x / {ratio_median:.2f}x  (best / median of {len(ours)})"
    )
    return ratio_median


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same sizes, fewer runs")
    parser.add_argument("--reports", type=int, default=300, help="reports per run (default 300)")
    parser.add_argument("--hosts", type=int, default=100, help="hosts the reports come from (default 100)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, --quick 2)")
    parser.add_argument(
        "--batch", type=int, default=0, help="reports per ingest batch (default: the settings')"
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ocrdash_bench_ingest")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 3)

    create_database(args.database_url)
    try:
        setup_django(args.database_url, args.broker_url)
        import tempfile

        fleet = Fleet(args.hosts)
        print(f"{args.reports} new {FILES}-file signed inventories per run, {args.hosts} hosts; {_load()}")
        run_direct(fleet.reports(20))  # warm-up: imports, caches, the first connection
        direct, floor = [], []
        for _ in range(runs):
            floor.append(run_floor(args.database_url, fleet.reports(args.reports)))
            direct.append(run_direct(fleet.reports(args.reports)))
        direct_vs_floor = line("direct ingest_report vs raw psycopg", direct, floor)
        with tempfile.TemporaryDirectory() as logs:
            one = celery_rates(1, runs, args.reports, fleet, args, Path(logs))
            celery_vs_direct = line("celery, 1 worker process vs direct", one, direct)
            two = celery_rates(2, runs, args.reports, fleet, args, Path(logs))
            two_vs_one = line("celery, 2 worker processes vs 1", two, one)
        print(f"after the runs: {_load()}")
        print(
            f"SUMMARY direct_vs_floor={direct_vs_floor:.2f} celery_vs_direct={celery_vs_direct:.2f} "
            f"two_workers_vs_one={two_vs_one:.2f} direct_per_s={statistics.median(direct):.0f} "
            f"floor_per_s={statistics.median(floor):.0f} one_worker_per_s={statistics.median(one):.0f} "
            f"two_workers_per_s={statistics.median(two):.0f}"
        )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(args.database_url)


if __name__ == "__main__":
    main()
