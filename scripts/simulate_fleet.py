#!/usr/bin/env python
"""A simulated fleet reporting through real Redis into real ingest workers.

``--hosts`` agents, each with its own Ed25519 key (enrolled in the database), send an
inventory every ``--interval`` seconds (spread evenly over the interval), signed and sent by
the agent's own code (``workers.trust.AgentTrust.sign_report``, ``workers.reporting.send_report``).
Each inventory replaces one of the host's files with probability ``--change-rate`` (a new
snapshot); the others are seen again. ``celery -A ocrdash worker -c --workers`` stores them in
a database of the simulator's own (created, migrated, dropped). The fleet starts at steady
state: every host's current inventory is loaded before the clock starts.

It prints the sustained rate (stored reports/s against the rate offered), the queue lag at
ingest (the time from an agent's send to the worker taking the report, p50 and p99, against
the goal of 10 s) and the reports lost (sent but not stored once the queue drained).

    python scripts/simulate_fleet.py --hosts 10000 --interval 300 --minutes 10
    python scripts/simulate_fleet.py --quick      # the same fleet for 3 minutes
    python scripts/simulate_fleet.py --heartbeat 30   # and a heartbeat from every host every 30 s

Heartbeats leave no ReceivedReport row; their lag is read off each host's row at the end
(when its last beat was taken against the beat's own ``sent_at``).

A new kind of message (a heartbeat, say) is one more ``Sender`` in ``senders()``.
"""

from __future__ import annotations

import argparse
import heapq
import io
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import Workers, create_database, drop_database, setup_django

LAG_GOAL_S = 10.0


@dataclass
class SimHost:
    """One simulated agent: its name, its key (as AgentTrust) and the files it holds."""

    name: str
    trust: object
    files: list = field(default_factory=list)
    version: int = 0


@dataclass
class Sender:
    """A kind of message every host sends every ``interval`` seconds: ``make(host)`` builds it."""

    name: str
    interval: float
    make: Callable[[SimHost], object]


def _file(host: int, slot: int, version: int):
    from workers.schema import FileEntry

    return FileEntry(
        path=f"models/family{slot:02d}/model{slot:02d}_v{version}.gguf",
        size=50_000_000 + slot * 4096 + version,
        mtime_ns=1_700_000_000_000_000_000 + version * 1_000_000 + slot,
        sha256=f"{host:032x}{slot:016x}{version:016x}",
        known_to_aspose=slot == 0,
    )


def build_fleet(hosts: int, files: int) -> list[SimHost]:
    """Hosts, keys and each host's current snapshot, written in bulk (COPY for the file rows)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from django.db import connection, transaction
    from django.utils import timezone

    from models_admin.ingest import snapshot_digest
    from models_admin.models import Host, HostKey, Snapshot
    from workers.signing.keys import key_fingerprint, public_key_text
    from workers.signing.replay import ReplayGuard
    from workers.trust import AgentTrust

    guard = ReplayGuard(Path(tempfile.mkdtemp(prefix="ocrdash-sim-")))  # orders only; none come
    dashboard_key = Ed25519PrivateKey.generate().public_key()
    now = timezone.now()
    fleet = []
    with transaction.atomic():
        rows = Host.objects.bulk_create(
            Host(
                name=f"sim-{i:05d}",
                status=Host.Status.ACTIVE,
                last_seen=now,
                model_dir="/srv/models",
                model_dir_state=Host.DirState.OK,
                disk_total=1 << 40,
                disk_free=1 << 39,
            )
            for i in range(hosts)
        )
        keys, snapshots = [], []
        for i, host in enumerate(rows):
            key = Ed25519PrivateKey.generate()
            keys.append(HostKey(host=host, public_key=public_key_text(key), fingerprint=key_fingerprint(key)))
            sim = SimHost(host.name, AgentTrust(host.name, dashboard_key, key, guard))
            sim.files = [_file(i, slot, 0) for slot in range(files)]
            fleet.append(sim)
            snapshots.append(
                Snapshot(
                    host=host,
                    taken_at=now,
                    last_seen_at=now,
                    digest=snapshot_digest(sim.files),
                    file_count=files,
                    total_bytes=sum(f.size for f in sim.files),
                )
            )
        HostKey.objects.bulk_create(keys, batch_size=2000)
        Snapshot.objects.bulk_create(snapshots, batch_size=2000)
        buffer = io.StringIO()
        for snapshot, sim in zip(snapshots, fleet, strict=True):
            for f in sim.files:
                name = f.path.rsplit("/", 1)[-1]
                row = (
                    snapshot.pk,
                    f.path,
                    name,
                    f.size,
                    f.mtime_ns,
                    f.sha256,
                    f.known_to_aspose,
                    False,
                    "llm",
                )
                buffer.write("\t".join(map(str, row)) + "\n")
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY models_admin_modelfile (snapshot_id, path, name, size, mtime_ns, sha256,"
                " known_to_aspose, is_symlink, store) FROM STDIN"
            ) as copy,
        ):
            copy.write(buffer.getvalue())
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE models_admin_host h SET current_snapshot_id = s.id, file_count = s.file_count,"
                " total_bytes = s.total_bytes FROM models_admin_snapshot s WHERE s.host_id = h.id"
            )
            cursor.execute("ANALYZE")
    return fleet


def inventory_sender(interval: float, change_rate: float, rng: random.Random) -> Sender:
    from workers.schema import HostFacts, InventoryReport, ModelDirState

    def make(host: SimHost):
        if rng.random() < change_rate:
            host.version += 1
            slot = rng.randrange(len(host.files))
            host.files[slot] = _file(int(host.name[4:]), slot, host.version)
        facts = HostFacts(
            hostname=host.name,
            model_dir="/srv/models",
            model_dir_state=ModelDirState.OK,
            disk_total=1 << 40,
            disk_free=(1 << 39) - host.version,
            agent_version="sim",
        )
        return InventoryReport(host=host.name, agent_version="sim", facts=facts, files=list(host.files))

    return Sender("inventory", interval, make)


def heartbeat_sender(interval: float) -> Sender:
    """The agent's heartbeat (workers/presence.py sends the same report every ``interval`` s)."""
    from datetime import UTC, datetime

    from workers.schema import HeartbeatReport, ModelDirState

    def make(host: SimHost):
        return HeartbeatReport(
            host=host.name,
            sent_at=datetime.now(UTC),
            interval_seconds=max(1, round(interval)),
            model_dir_state=ModelDirState.OK,
            disk_total=1 << 40,
            disk_free=(1 << 39) - host.version,
            agent_version="sim",
        )

    return Sender("heartbeat", interval, make)


def senders(args, rng: random.Random) -> list[Sender]:
    kinds = [inventory_sender(args.interval, args.change_rate, rng)]
    if args.heartbeat:
        kinds.append(heartbeat_sender(args.heartbeat))
    return kinds


def run(
    fleet: list[SimHost], kinds: list[Sender], minutes: float, broker_url: str, queue: str
) -> tuple[dict[str, float], dict[str, float], int]:
    """Send every kind from every host on its schedule for ``minutes``. Returns the send time
    of each report that leaves a ReceivedReport row (by id), the ``sent_at`` of each host's
    last heartbeat (beats leave no row: their lag is read off the host's row) and the beats sent."""
    from celery import Celery

    from workers.reporting import send_report

    app = Celery("ocrdash-simulator", broker=broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    start = time.time()
    end = start + minutes * 60
    due = []
    for k, kind in enumerate(kinds):
        for i in range(len(fleet)):
            heapq.heappush(due, (start + kind.interval * i / len(fleet), k, i))
    sent: dict[str, float] = {}
    last_beat: dict[str, float] = {}
    beats = 0
    late = 0.0
    with app.producer_or_acquire():
        while due:
            at, k, i = heapq.heappop(due)
            if at >= end:
                break
            pause = at - time.time()
            if pause > 0:
                time.sleep(pause)
            else:
                late = max(late, -pause)
            report = kinds[k].make(fleet[i])
            send_report(app, report, fleet[i].trust, queue=queue)
            if report.kind == "heartbeat":
                last_beat[report.host] = report.sent_at.timestamp()
                beats += 1
            else:
                sent[report.report_id] = time.time()
            heapq.heappush(due, (at + kinds[k].interval, k, i))
    if late > 1:
        print(f"note: the simulator itself fell {late:.1f} s behind its schedule at worst")
    return sent, last_beat, beats


def collect(sent: dict[str, float], workers: Workers, drain_s: float) -> tuple[dict[str, float], int]:
    """Wait until every sent report is stored (or nothing moved for ``drain_s``); returns the
    ingest time of each accepted id and the number of rejected ones (stored, with a reason:
    not lost)."""
    from django.db import connection

    deadline, last = time.monotonic() + drain_s, -1
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM models_admin_receivedreport WHERE report_id IS NOT NULL")
            stored = cursor.fetchone()[0]
        if stored >= len(sent):
            break
        if stored != last:
            deadline, last = time.monotonic() + drain_s, stored
        if time.monotonic() > deadline or workers.process.poll() is not None:
            break
        time.sleep(1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT report_id, extract(epoch FROM received_at), status FROM models_admin_receivedreport"
            " WHERE report_id IS NOT NULL"
        )
        rows = cursor.fetchall()
    stored_at = {rid: float(at) for rid, at, status in rows if status == "accepted" and rid in sent}
    return stored_at, sum(1 for rid, _, status in rows if status != "accepted" and rid in sent)


def beat_lags(last_beat: dict[str, float]) -> tuple[list[float], int]:
    """The lag of each host's last heartbeat (taken minus sent, off the host's row) and the
    hosts whose last beat was not taken."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, extract(epoch FROM last_heartbeat_at), extract(epoch FROM heartbeat_sent_at)"
            " FROM models_admin_host WHERE heartbeat_sent_at IS NOT NULL"
        )
        rows = {name: (float(taken), float(sent)) for name, taken, sent in cursor.fetchall()}
    lags, missing = [], 0
    for host, sent in last_beat.items():
        row = rows.get(host)
        # The agent's code signs with sent_at set anew (trust.sign_report): the stored one is
        # the last beat's if it is not older than the beat as made (the one before it was
        # made a whole interval earlier).
        if row is None or row[1] < sent:
            missing += 1
        else:
            lags.append(row[0] - row[1])
    return lags, missing


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=300, help="seconds between a host's inventories")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--quick", action="store_true", help="the same fleet, a 3-minute run")
    parser.add_argument("--files", type=int, default=50, help="files per host (default 50)")
    parser.add_argument("--change-rate", type=float, default=0.05, help="share of changed inventories")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes (default 2)")
    parser.add_argument(
        "--heartbeat", type=float, default=0, help="seconds between a host's heartbeats (default: none)"
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="reports per ingest batch (default: the settings')"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/ocrdash_simulate_fleet")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    minutes = 3 if args.quick else args.minutes

    create_database(args.database_url)
    workers = None
    queue = f"ocrdash.ingest.sim-{uuid.uuid4().hex[:8]}"
    try:
        setup_django(args.database_url, args.broker_url)
        t0 = time.perf_counter()
        fleet = build_fleet(args.hosts, args.files)
        print(f"{args.hosts} hosts x {args.files} files loaded in {time.perf_counter() - t0:.0f} s")
        logs = Path(tempfile.mkdtemp(prefix="ocrdash-sim-logs-"))
        workers = Workers(
            args.workers, args.database_url, args.broker_url, queue, logs / "worker.log", args.batch
        )
        time.sleep(5)  # the workers start
        one, five, _ = os.getloadavg()
        print(
            f"{args.hosts} hosts every {args.interval:g} s for {minutes:g} min,"
            f" change rate {args.change_rate:g}, {args.workers} ingest worker processes;"
            f" load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores"
        )
        rng = random.Random(args.seed)
        started = time.time()
        sent, last_beat, beats = run(fleet, senders(args, rng), minutes, args.broker_url, queue)
        sending = time.time() - started
        stored_at, rejected = collect(sent, workers, drain_s=60)
        lags = [stored_at[rid] - at for rid, at in sent.items() if rid in stored_at]
        lost = len(sent) - len(stored_at) - rejected
        span = (max(stored_at.values()) - min(sent.values())) if stored_at else float("nan")
        offered = len(sent) / sending
        sustained = len(stored_at) / span if span else 0.0
        p50, p99 = percentile(lags, 50), percentile(lags, 99)
        print(f"sent {len(sent)} reports in {sending:.0f} s, stored {len(stored_at)}, rejected {rejected}")
        ratio = sustained / offered
        print(f"sustained reports/s   ours {sustained:8.1f} / offered {offered:8.1f} / ratio {ratio:.2f}x")
        for label, value in (("p50", p50), ("p99", p99)):
            print(
                f"queue lag {label} (s)     ours {value:8.2f} / goal {LAG_GOAL_S:8.1f}"
                f" / ratio {value / LAG_GOAL_S:.2f}x"
            )
        print(f"lost reports          ours {lost:8d} / goal {0:8d}")
        beat_summary = ""
        if beats:
            # The last beats may still wait for their batch: look again for up to 15 s.
            deadline = time.monotonic() + 15
            beat_lag, beats_missing = beat_lags(last_beat)
            while beats_missing and time.monotonic() < deadline:
                time.sleep(1)
                beat_lag, beats_missing = beat_lags(last_beat)
            b50, b99 = percentile(beat_lag, 50), percentile(beat_lag, 99)
            print(f"heartbeats: {beats} sent ({beats / sending:.0f}/s), last beat of {len(last_beat)} hosts:")
            for label, value in (("p50", b50), ("p99", b99)):
                print(
                    f"heartbeat lag {label} (s) ours {value:8.2f} / goal {LAG_GOAL_S:8.1f}"
                    f" / ratio {value / LAG_GOAL_S:.2f}x"
                )
            print(f"last beats not taken  ours {beats_missing:8d} / goal {0:8d}")
            beat_summary = (
                f" beats_per_s={beats / sending:.0f} beat_lag_p99_s={b99:.2f} beats_missing={beats_missing}"
            )
        one, five, _ = os.getloadavg()
        worst = max(lags, default=float("nan"))
        print(f"after the run: load average {one:.2f} / {five:.2f}; lag max {worst:.2f} s")
        print(
            f"SUMMARY lost={lost} lag_p99_s={p99:.2f} lag_p50_s={p50:.2f} sustained_per_s={sustained:.1f}"
            f" offered_per_s={offered:.1f} rejected={rejected} hosts={args.hosts} workers={args.workers}"
            f"{beat_summary}"
        )
    finally:
        if workers is not None:
            workers.stop()
            from kombu import Connection

            with Connection(args.broker_url) as conn:
                conn.SimpleQueue(queue).queue.delete()
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)


if __name__ == "__main__":
    main()
