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

from models_admin.inventory import reports
from models_admin.models import Host, Snapshot

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
