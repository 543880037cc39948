"""The reports page's disk numbers computed in SQL, compared with a straightforward recount.

``reports.disk_per_day`` walks every host and every day in Python: slow at 10,000 hosts, but
plainly right, so it is the oracle here for ``fleet_per_day`` and ``disk_overview`` on random
histories (several inventories a day, equal timestamps, hosts without any, a time zone whose
days are not UTC's, a host filter).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from models_admin.inventory import reports, rollup
from models_admin.models import DiskDay, Host, Snapshot

pytestmark = pytest.mark.django_db


def _random_history(rng: random.Random, hosts: int) -> None:
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    snaps = []
    for i in range(hosts):
        h = Host.objects.create(name=f"h{rng.choice('aAbB_-')}{i:03d}", model_dir="/srv/m")
        if rng.random() < 0.15:
            continue  # a host that never sent an inventory counts as 0
        moment = origin + timedelta(hours=rng.randint(0, 24 * 40))
        for _ in range(rng.randint(1, 12)):
            # Often several on a day, sometimes at the same instant (the id decides).
            moment += rng.choice(
                [
                    timedelta(0),
                    timedelta(minutes=rng.randint(1, 300)),
                    timedelta(days=rng.randint(1, 9), hours=rng.randint(0, 23)),
                ]
            )
            snaps.append(
                Snapshot(
                    host=h,
                    taken_at=moment,
                    last_seen_at=moment,
                    digest=f"{rng.getrandbits(128):032x}",
                    file_count=rng.randint(0, 50),
                    total_bytes=rng.choice([0, rng.randint(1, 10**12)]),
                )
            )
    rng.shuffle(snaps)  # ids not in time order
    Snapshot.objects.bulk_create(snaps)
    # What ingest keeps with every new snapshot: the host's newest is its current one, with
    # its numbers on the host row, and the daily rollup.
    for h in Host.objects.all():
        newest = h.snapshots.order_by("-taken_at", "-id").first()
        if newest is not None:
            h.current_snapshot, h.total_bytes, h.file_count = newest, newest.total_bytes, newest.file_count
            h.save(update_fields=["current_snapshot", "total_bytes", "file_count"])
    rollup.rebuild()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("tz", ["UTC", "Pacific/Chatham", "America/New_York"])
def test_fleet_and_top_hosts_match_a_recount_on_random_histories(seed: int, tz: str) -> None:
    rng = random.Random(seed)
    with override_settings(TIME_ZONE=tz):
        _random_history(rng, 40)
        names = sorted(Host.objects.values_list("name", flat=True))
        ranges = [
            (date(2026, 1, 1), date(2026, 4, 1)),
            (date(2026, 1, 20), date(2026, 2, 3)),
            (date(2025, 12, 1), date(2025, 12, 5)),
            (date(2026, 2, 10), date(2026, 2, 10)),
            # Up to today: after every snapshot, so the top hosts come from the host rows.
            (date(2026, 1, 25), timezone.localdate()),
        ]
        for start, end in ranges:
            for chosen in ([], rng.sample(names, 5)):
                oracle = reports.disk_per_day(start, end, chosen)
                assert reports.fleet_per_day(start, end, chosen) == (oracle.fleet_bytes, oracle.fleet_files)
                for top in (1, 7, 100):
                    overview = reports.disk_overview(start, end, chosen, top=top)
                    latest = sorted(oracle.latest(), key=lambda r: (-r["bytes"], r["host"]))[:top]
                    assert overview.latest == sorted(latest, key=lambda r: r["host"])
                    assert overview.host_count == len(oracle.hosts)
                    assert overview.fleet_bytes == oracle.fleet_bytes
                    assert overview.fleet_files == oracle.fleet_files
                    shown = {r["host"] for r in latest}
                    assert overview.top.bytes == {h: oracle.bytes[h] for h in oracle.hosts if h in shown}
                    others = [h for h in oracle.hosts if h not in shown]
                    expected_other = [sum(c) for c in zip(*(oracle.bytes[h] for h in others), strict=True)]
                    assert overview.other_bytes == (expected_other if others else [])


def test_disk_overview_query_count_does_not_grow_with_hosts_or_days(django_assert_max_num_queries) -> None:
    _random_history(random.Random(7), 60)
    with django_assert_max_num_queries(5):
        reports.disk_overview(date(2025, 1, 1), date(2026, 12, 31))


def _rows() -> set[tuple]:
    """The rollup as a set of its non-zero (zone, day, shard, bytes, files) rows."""
    return {
        r
        for r in DiskDay.objects.values_list("zone", "day", "shard", "bytes_change", "files_change")
        if r[3] or r[4]
    }


def _assert_rollup_agrees(start: date, end: date) -> None:
    """The rollup kept so far is the one ``rebuild`` makes, and the reports' fleet series from
    it is the recount's."""
    kept = _rows()
    oracle = reports.disk_per_day(start, end)
    assert reports.fleet_per_day(start, end) == (oracle.fleet_bytes, oracle.fleet_files)
    rollup.rebuild()
    assert kept == _rows()


def test_ingest_keeps_the_rollup_a_rebuild_would_make(make_host) -> None:
    from .conftest import ingest
    from .test_ingest import inventory

    for name in ("ocr-1", "ocr-2", "ocr-3"):
        make_host(name, {})
    rng = random.Random(5)
    for step in range(12):
        name = rng.choice(["ocr-1", "ocr-2", "ocr-3"])
        files = {f"m{i}.gguf": rng.randint(1, 10**9) for i in range(rng.randint(0, 6))}
        ingest(inventory(name, files))
        if step % 4 == 0:
            ingest(inventory(name, files))  # seen again: no new snapshot, no change
    today = timezone.localdate()
    assert DiskDay.objects.filter(day=today).exists()
    _assert_rollup_agrees(today - timedelta(days=3), today)


def test_compaction_moves_a_deleted_snapshots_change_to_the_next_kept_one() -> None:
    from models_admin.inventory import compaction

    from .history_factories import at, host, snapshot

    for name, base in (("ocr-a", 100), ("ocr-b", 7)):
        h = host(name)
        day = date(2026, 3, 2)
        size = base
        while day <= date(2026, 6, 29):
            for hour in (1, 12, 23):
                size += 13 if hour == 12 else -5
                files = {"en.gguf": 1000, f"v{day.day % 4}.bin": size}
                if day.day % 5 == 0:
                    files["extra.bin"] = 3
                snapshot(h, at(f"{day} {hour:02d}:00"), files)
            day += timedelta(days=1)
        counts = compaction.compact_host(h.id, at("2026-06-30 12:00"), compaction.Retention(30, 90))
        assert counts and counts["snapshots_deleted"] > 100
    _assert_rollup_agrees(date(2026, 3, 1), date(2026, 6, 30))
    _assert_rollup_agrees(date(2026, 5, 10), date(2026, 5, 20))


def test_the_reports_count_from_the_snapshots_until_the_rollup_is_rebuilt_in_a_new_zone() -> None:
    _random_history(random.Random(9), 30)  # rolled up in UTC (the test settings' zone)
    start, end = date(2026, 1, 10), date(2026, 2, 20)
    with override_settings(TIME_ZONE="Pacific/Chatham"):
        oracle = reports.disk_per_day(start, end)
        assert rollup.fleet_changes(start, end) is None  # rows of another zone
        assert reports.fleet_per_day(start, end) == (oracle.fleet_bytes, oracle.fleet_files)
        rollup.rebuild()
        assert rollup.fleet_changes(start, end) is not None
        assert reports.fleet_per_day(start, end) == (oracle.fleet_bytes, oracle.fleet_files)
        assert {zone for zone, *_ in _rows()} == {"Pacific/Chatham"}


def test_the_rebuild_command_counts_the_rollup_in_the_new_zone() -> None:
    from io import StringIO

    from django.core.management import call_command

    _random_history(random.Random(4), 10)
    with override_settings(TIME_ZONE="America/New_York"):
        out = StringIO()
        call_command("rebuild_reports_rollup", stdout=out)
        assert out.getvalue().strip().endswith("rows in America/New_York")
        assert {zone for zone, *_ in _rows()} == {"America/New_York"}
        oracle = reports.disk_per_day(date(2026, 1, 1), date(2026, 3, 1))
        assert rollup.fleet_changes(date(2026, 1, 1), date(2026, 3, 1)) is not None
        assert reports.fleet_per_day(date(2026, 1, 1), date(2026, 3, 1)) == (
            oracle.fleet_bytes,
            oracle.fleet_files,
        )
