"""reports.py against a history whose numbers are worked out by hand in each test."""

from __future__ import annotations

from datetime import date

import pytest

from models_admin.inventory import reports
from models_admin.models import PruneItem, PruneRequest

from .history_factories import at, host, prune, snapshot

pytestmark = pytest.mark.django_db

State = PruneRequest.State


def test_bytes_per_day_take_the_last_snapshot_of_the_day_and_carry_it_forward():
    a, b = host("ocr-a"), host("ocr-b")
    snapshot(a, at("2026-02-25 08:00"), {"x.gguf": 80})  # before the range: the starting value
    snapshot(a, at("2026-03-01 10:00"), {"x.gguf": 100})
    snapshot(a, at("2026-03-01 15:00"), {"x.gguf": 100, "y.bin": 50})  # last of Mar 1
    snapshot(a, at("2026-03-03 09:00"), {"y.bin": 50})
    snapshot(b, at("2026-03-02 23:59"), {"z.onnx": 200})
    snapshot(b, at("2026-03-05 00:00"), {"z.onnx": 999})  # after the range: ignored

    series = reports.disk_per_day(date(2026, 3, 1), date(2026, 3, 4))

    assert series.days == [date(2026, 3, d) for d in (1, 2, 3, 4)]
    assert series.hosts == ["ocr-a", "ocr-b"]
    assert series.bytes["ocr-a"] == [150, 150, 50, 50]
    assert series.bytes["ocr-b"] == [0, 200, 200, 200]
    assert series.fleet_bytes == [150, 350, 250, 250]
    assert series.files["ocr-a"] == [2, 2, 1, 1]
    assert series.fleet_files == [2, 3, 2, 2]
    assert series.latest() == [
        {"host": "ocr-a", "files": 1, "bytes": 50},
        {"host": "ocr-b", "files": 1, "bytes": 200},
    ]


def test_bytes_per_day_can_be_limited_to_some_hosts():
    a, b = host("ocr-a"), host("ocr-b")
    snapshot(a, at("2026-03-01 10:00"), {"x": 10})
    snapshot(b, at("2026-03-01 10:00"), {"x": 20})

    series = reports.disk_per_day(date(2026, 3, 1), date(2026, 3, 2), hosts=["ocr-b"])

    assert series.hosts == ["ocr-b"]
    assert series.fleet_bytes == [20, 20]


def test_reclaimed_per_week_counts_only_prunes_that_gave_space_back(approver, operator):
    a, b = host("ocr-a"), host("ocr-b")
    # Week of Mon 2026-03-02: 300 (a) + 40 (b); the skipped item and the restore do not count.
    prune(
        a,
        [("old_a.bin", 100, "quarantined", 100), ("old_b.bin", 200, "deleted", 200)],
        created_at=at("2026-03-02 09:00"),
        finished_at=at("2026-03-03 10:00"),
    )
    prune(
        b,
        [("old_c.bin", 40, "deleted", 40), ("old_d.bin", 70, "skipped_changed", 0)],
        created_at=at("2026-03-06 09:00"),
        finished_at=at("2026-03-08 23:30"),  # Sunday: still the week of Mar 2
        state=State.PARTIAL,
    )
    prune(
        a,
        [("old_a.bin", 100, "restored", 0)],
        created_at=at("2026-03-04 09:00"),
        finished_at=at("2026-03-04 10:00"),
        kind=PruneRequest.Kind.RESTORE,
    )
    # Week of Mon 2026-03-16: 5. The week of Mar 9 has nothing and is still listed.
    prune(
        a,
        [("old_e.bin", 5, "quarantined", 5)],
        created_at=at("2026-03-16 00:00"),
        finished_at=at("2026-03-16 00:00"),
    )
    # Outside the range.
    prune(
        a,
        [("old_f.bin", 7, "deleted", 7)],
        created_at=at("2026-03-20 00:00"),
        finished_at=at("2026-03-23 00:00"),
    )

    weeks = reports.reclaimed_per_week(date(2026, 3, 2), date(2026, 3, 22))

    assert [(w["week"], w["bytes"], w["files"]) for w in weeks] == [
        (date(2026, 3, 2), 340, 3),
        (date(2026, 3, 9), 0, 0),
        (date(2026, 3, 16), 5, 1),
    ]
    assert weeks[0]["per_host"] == {"ocr-a": 300, "ocr-b": 40}
    assert reports.reclaimed_per_host(date(2026, 3, 2), date(2026, 3, 22)) == [
        {"host": "ocr-a", "bytes": 305, "in_quarantine": 105, "freed": 200, "files": 3},
        {"host": "ocr-b", "bytes": 40, "in_quarantine": 0, "freed": 40, "files": 1},
    ]
    only_b = reports.reclaimed_per_week(date(2026, 3, 2), date(2026, 3, 22), hosts=["ocr-b"])
    assert [w["bytes"] for w in only_b] == [40, 0, 0]


def test_requests_per_week_counts_decisions_and_what_still_waits(approver):
    a = host("ocr-a")
    item = [("old.bin", 1, "pending", 0)]
    # Proposed Mar 3, approved Mar 10: pending at the end of week 1, approved in week 2.
    prune(
        a, item, created_at=at("2026-03-03 09:00"), decided_at=at("2026-03-10 09:00"), state=State.COMPLETED
    )
    # Proposed and rejected in week 1.
    prune(a, item, created_at=at("2026-03-04 09:00"), decided_at=at("2026-03-05 09:00"), state=State.REJECTED)
    # Proposed week 2, expired week 3.
    prune(a, item, created_at=at("2026-03-11 09:00"), finished_at=at("2026-03-17 09:00"), state=State.EXPIRED)
    # Proposed week 3, still waiting.
    prune(a, item, created_at=at("2026-03-18 09:00"), state=State.PROPOSED)
    # Proposed before the range, still waiting: pending in every week, proposed in none.
    prune(a, item, created_at=at("2026-02-20 09:00"), state=State.PROPOSED)
    # Closed before the range: not there at all.
    prune(a, item, created_at=at("2026-02-01 09:00"), decided_at=at("2026-02-02 09:00"), state=State.REJECTED)

    rows = reports.requests_per_week(date(2026, 3, 2), date(2026, 3, 22))

    as_tuples = [
        (r["week"], r["proposed"], r["approved"], r["rejected"], r["expired"], r["pending"]) for r in rows
    ]
    assert as_tuples == [
        (date(2026, 3, 2), 2, 0, 1, 0, 2),
        (date(2026, 3, 9), 1, 1, 0, 0, 2),
        (date(2026, 3, 16), 1, 0, 0, 1, 2),
    ]


def test_snapshot_at_is_the_one_valid_at_that_moment():
    a = host("ocr-a")
    first = snapshot(a, at("2026-03-01 10:00"), {"x": 1})
    second = snapshot(a, at("2026-03-02 10:00"), {"x": 2})

    assert reports.snapshot_at(a, at("2026-03-01 09:59")) is None
    assert reports.snapshot_at(a, at("2026-03-01 10:00")) == first
    assert reports.snapshot_at(a, at("2026-03-02 09:59")) == first
    assert reports.snapshot_at(a, at("2030-01-01 00:00")) == second


def test_timeline_steps_count_changes_against_the_previous_snapshot_even_across_pages():
    a = host("ocr-a")
    snapshot(a, at("2026-03-01 10:00"), {"a": 1, "b": 2})
    snapshot(a, at("2026-03-02 10:00"), {"a": 1, "b": 3, "c": 4})  # +c, b changed
    snapshot(a, at("2026-03-03 10:00"), {"c": 4})  # -a, -b
    newest_first = list(a.snapshots.order_by("-taken_at", "-id"))

    page_two = reports.timeline_steps(newest_first[1:2])  # only Mar 2: its parent is off the page
    steps = reports.timeline_steps(newest_first)

    assert [(s.added, s.removed, s.changed, s.bytes_delta) for s in steps] == [
        (0, 2, 0, -4),
        (1, 0, 1, 5),
        (2, 0, 0, 3),
    ]
    assert (page_two[0].added, page_two[0].changed, page_two[0].previous_id) == (1, 1, newest_first[2].id)
    assert steps[-1].previous_id is None


def test_deletions_carry_who_asked_who_approved_and_the_file_identity(operator, approver, approver2):
    a, b = host("ocr-a"), host("ocr-b")
    r1 = prune(
        a,
        [("m/old_a.bin", 100, "quarantined", 100), ("m/old_b.bin", 50, "skipped_missing", 0)],
        created_at=at("2026-03-02 09:00"),
        requested_by=operator,
        decided_by=approver,
        decided_at=at("2026-03-02 10:00"),
        finished_at=at("2026-03-02 11:00"),
        comment="fine",
        state=State.PARTIAL,
    )
    prune(
        b,
        [("old_c.bin", 30, "deleted", 30)],
        created_at=at("2026-03-05 09:00"),
        decided_by=approver2,
        decided_at=at("2026-03-05 10:00"),
        finished_at=at("2026-03-05 11:00"),
    )
    march = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31))

    rows = [reports.deletion_row(i) for i in reports.deletions(march)]
    assert [(r["host"], r["path"], r["requested_by"], r["approved_by"]) for r in rows] == [
        ("ocr-b", "old_c.bin", "policy", "bob"),
        ("ocr-a", "m/old_a.bin", "otto", "alice"),
    ]
    assert rows[1]["comment"] == "fine"
    assert rows[1]["request_id"] == str(r1.id)
    assert (rows[1]["size"], rows[1]["outcome"], rows[1]["bytes_in_quarantine"]) == (100, "quarantined", 100)
    assert (rows[0]["bytes_in_quarantine"], rows[0]["bytes_freed"]) == (0, 30)
    assert len(rows[1]["sha256"]) == 64
    assert reports.deletion_totals(reports.deletions(march)) == {
        "rows": 2,
        "files": 2,
        "bytes_in_quarantine": 100,
        "bytes_freed": 30,
        "requests": 2,
    }

    everything = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31), outcomes="all")
    assert reports.deletion_totals(reports.deletions(everything)) == {
        "rows": 3,
        "files": 2,
        "bytes_in_quarantine": 100,
        "bytes_freed": 30,
        "requests": 2,
    }
    by_otto = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31), user="otto")
    by_bob = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31), user="bob")
    on_a = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31), hosts=["ocr-a"])
    april = reports.DeletionFilter(start=date(2026, 4, 1), end=date(2026, 4, 30))
    assert [i.path for i in reports.deletions(by_otto)] == ["m/old_a.bin"]
    assert [i.path for i in reports.deletions(by_bob)] == ["old_c.bin"]
    assert [i.path for i in reports.deletions(on_a)] == ["m/old_a.bin"]
    assert list(reports.deletions(april)) == []


def test_deletions_are_one_query(django_assert_num_queries, operator, approver):
    a = host("ocr-a")
    for n in range(5):
        prune(
            a,
            [(f"old_{n}.bin", 10, "deleted", 10)],
            created_at=at("2026-03-02 09:00"),
            requested_by=operator,
            decided_by=approver,
            finished_at=at("2026-03-02 11:00"),
        )
    with django_assert_num_queries(1):
        rows = [
            reports.deletion_row(i)
            for i in reports.deletions(reports.DeletionFilter(date(2026, 3, 1), date(2026, 3, 3)))
        ]
    assert len(rows) == 5


def test_model_lifecycle_follows_a_model_across_hosts_and_names_who_removed_it(operator, approver):
    a, b = host("ocr-a"), host("ocr-b")
    snapshot(a, at("2026-03-01 10:00"), {"m/old_fr.bin": 10, "en.gguf": 5})
    snapshot(
        a, at("2026-03-05 10:00"), {"m/old_fr.bin": 10, "en.gguf": 5}, last_seen_at=at("2026-03-06 10:00")
    )
    snapshot(a, at("2026-03-07 10:00"), {"en.gguf": 5})
    prune(
        a,
        [("m/old_fr.bin", 10, "quarantined", 10)],
        created_at=at("2026-03-06 09:00"),
        requested_by=operator,
        decided_by=approver,
        decided_at=at("2026-03-06 09:30"),
        finished_at=at("2026-03-06 12:00"),
    )
    snapshot(b, at("2026-03-02 10:00"), {"old_fr.bin": 10})

    life = reports.model_lifecycle("old_fr.bin")

    assert [h.host for h in life] == ["ocr-a", "ocr-b"]
    on_a, on_b = life
    assert (on_a.first_seen, on_a.last_seen, on_a.present) == (
        at("2026-03-01 10:00"),
        at("2026-03-06 10:00"),
        False,
    )
    assert on_a.gone_since == at("2026-03-07 10:00")
    assert [(r["requested_by"], r["approved_by"], r["outcome"]) for r in on_a.removals] == [
        ("otto", "alice", "quarantined")
    ]
    assert (on_b.present, on_b.gone_since, on_b.paths) == (True, None, ["old_fr.bin"])

    by_hash = reports.model_lifecycle(snapshot_sha := on_a.removals[0]["sha256"])
    assert snapshot_sha.upper() and [h.host for h in by_hash] == [
        "ocr-a"
    ]  # b's copy has another path: another hash
    assert reports.model_lifecycle(snapshot_sha.upper())[0].host == "ocr-a"


def test_a_restored_file_counts_as_reclaimed_nowhere(approver, operator):
    a = host("ocr-r")
    pruned = prune(
        a,
        [("old_a.bin", 100, "quarantined", 100), ("old_b.bin", 30, "quarantined", 30)],
        created_at=at("2026-03-02 09:00"),
        finished_at=at("2026-03-03 10:00"),
        requested_by=operator,
        decided_by=approver,
    )
    restore = prune(
        a,
        [("old_a.bin", 100, "restored", 0)],
        created_at=at("2026-03-05 09:00"),
        finished_at=at("2026-03-05 10:00"),
        kind=PruneRequest.Kind.RESTORE,
    )
    PruneRequest.objects.filter(pk=restore.pk).update(restore_of=pruned)
    march = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31))

    [week] = reports.reclaimed_per_week(date(2026, 3, 2), date(2026, 3, 8))
    assert (week["bytes"], week["files"]) == (30, 1)
    rows = {r["path"]: r for r in map(reports.deletion_row, reports.deletions(march))}
    assert (rows["old_a.bin"]["outcome"], rows["old_a.bin"]["bytes_in_quarantine"]) == (
        "quarantined, restored",
        0,
    )
    assert rows["old_a.bin"]["bytes_freed"] == 0
    assert (rows["old_b.bin"]["outcome"], rows["old_b.bin"]["bytes_in_quarantine"]) == ("quarantined", 30)
    totals = reports.deletion_totals(reports.deletions(march))
    assert (totals["files"], totals["bytes_in_quarantine"], totals["bytes_freed"]) == (1, 30, 0)


def test_a_purged_file_counts_as_reclaimed_and_as_freed_on_disk():
    """A purge frees a quarantined file's bytes on the disk: the file still left its folder
    that week, and now counts as freed, not as waiting in quarantine."""
    a, b = host("ocr-a"), host("ocr-b")
    prune(
        a,
        [
            ("waiting.bin", 100, "quarantined", 100),
            ("purged.bin", 40, "purged", 40),
            ("gone.bin", 5, "deleted", 5),
        ],
        created_at=at("2026-03-02 09:00"),
        finished_at=at("2026-03-03 10:00"),
    )
    prune(
        b,
        [("old.bin", 8, "purged", 8)],
        created_at=at("2026-03-10 09:00"),
        finished_at=at("2026-03-10 10:00"),
    )

    weeks = reports.reclaimed_per_week(date(2026, 3, 2), date(2026, 3, 15))

    assert [(w["week"], w["bytes"], w["in_quarantine"], w["freed"], w["files"]) for w in weeks] == [
        (date(2026, 3, 2), 145, 100, 45, 3),
        (date(2026, 3, 9), 8, 0, 8, 1),
    ]
    assert weeks[1]["per_host"] == {"ocr-b": 8}
    assert reports.reclaimed_per_host(date(2026, 3, 2), date(2026, 3, 15)) == [
        {"host": "ocr-a", "bytes": 145, "in_quarantine": 100, "freed": 45, "files": 3},
        {"host": "ocr-b", "bytes": 8, "in_quarantine": 0, "freed": 8, "files": 1},
    ]


def test_a_restore_gives_back_only_the_file_of_its_own_store():
    """The model folder and Aspose's OCR resources folder may hold the same relative path:
    restoring the OCR one leaves the model folder's file reclaimed."""
    a = host("ocr-s")
    pruned = prune(a, [], created_at=at("2026-03-02 09:00"), finished_at=at("2026-03-03 10:00"))
    for store in ("llm", "ocr"):
        PruneItem.objects.create(
            request=pruned,
            store=store,
            path="shared/model.bin",
            size=100,
            mtime_ns=1,
            sha256="a" * 64,
            outcome="quarantined",
            bytes_reclaimed=100,
            finished_at=at("2026-03-03 10:00"),
        )
    restore = prune(
        a,
        [],
        created_at=at("2026-03-05 09:00"),
        finished_at=at("2026-03-05 10:00"),
        kind=PruneRequest.Kind.RESTORE,
    )
    PruneRequest.objects.filter(pk=restore.pk).update(restore_of=pruned)
    PruneItem.objects.create(
        request=restore,
        store="ocr",
        path="shared/model.bin",
        size=100,
        mtime_ns=1,
        sha256="a" * 64,
        outcome="restored",
        finished_at=at("2026-03-05 10:00"),
    )

    [week] = reports.reclaimed_per_week(date(2026, 3, 2), date(2026, 3, 8))
    assert (week["bytes"], week["in_quarantine"], week["files"]) == (100, 100, 1)
    march = reports.DeletionFilter(start=date(2026, 3, 1), end=date(2026, 3, 31))
    rows = {
        (i.store, r["outcome"], r["bytes_in_quarantine"])
        for i in reports.deletions(march)
        for r in [reports.deletion_row(i)]
    }
    assert rows == {("llm", "quarantined", 100), ("ocr", "quarantined, restored", 0)}
