"""diff_snapshots, change_summaries and the last-copy computation."""

from __future__ import annotations

from datetime import timedelta

from models_admin.inventory.history import change_summaries, diff_snapshots, hashes_elsewhere
from models_admin.models import Host, ModelFile, Snapshot

from .conftest import sha


def _snapshot(host: Host, files: dict[str, tuple[int, str]], days_ago: int) -> Snapshot:
    from django.utils import timezone

    when = timezone.now() - timedelta(days=days_ago)
    snap = Snapshot.objects.create(host=host, taken_at=when, last_seen_at=when, digest=str(days_ago))
    ModelFile.objects.bulk_create(
        ModelFile(snapshot=snap, path=p, name=p.rsplit("/", 1)[-1], size=s, mtime_ns=1, sha256=h)
        for p, (s, h) in files.items()
    )
    return snap


def test_it_diffs_added_removed_and_changed_by_path(make_host):
    host = make_host("ocr-1", {})
    a = _snapshot(host, {"keep.bin": (10, "k"), "gone.bin": (20, "g"), "grown.bin": (30, "x")}, 3)
    b = _snapshot(host, {"keep.bin": (10, "k"), "new.bin": (40, "n"), "grown.bin": (35, "y")}, 1)
    diff = diff_snapshots(a, b)
    assert [f.path for f in diff.added] == ["new.bin"]
    assert [f.path for f in diff.removed] == ["gone.bin"]
    assert [(x.size, y.size) for x, y in diff.changed] == [(30, 35)]
    assert diff.bytes_delta == 40 - 20 + 5


def test_it_finds_no_difference_between_equal_snapshots(make_host):
    host = make_host("ocr-1", {})
    files = {"a.bin": (1, "a"), "sub/b.bin": (2, "b")}
    assert diff_snapshots(_snapshot(host, files, 2), _snapshot(host, files, 1)).is_empty


def test_it_diffs_from_nothing(make_host):
    host = make_host("ocr-1", {})
    diff = diff_snapshots(None, _snapshot(host, {"a.bin": (1, "a")}, 1))
    assert [f.path for f in diff.added] == ["a.bin"] and not diff.removed


def test_it_sees_a_new_hash_under_the_same_size_as_a_change(make_host):
    host = make_host("ocr-1", {})
    diff = diff_snapshots(
        _snapshot(host, {"a.bin": (1, "old")}, 2), _snapshot(host, {"a.bin": (1, "new")}, 1)
    )
    assert len(diff.changed) == 1


def test_it_summarises_each_snapshot_against_the_one_before_even_outside_the_page(make_host):
    host = make_host("ocr-1", {})
    first = _snapshot(host, {"a.bin": (1, "a")}, 5)
    second = _snapshot(host, {"a.bin": (1, "a"), "b.bin": (2, "b")}, 3)
    third = _snapshot(host, {"b.bin": (3, "c")}, 1)
    # Only the two newest are shown; the second still compares against the first.
    summaries = change_summaries([third, second])
    assert (summaries[second.id].added, summaries[second.id].removed, summaries[second.id].first) == (
        1,
        0,
        False,
    )
    assert (summaries[third.id].added, summaries[third.id].removed, summaries[third.id].changed) == (0, 1, 1)
    assert change_summaries([first])[first.id].first


def test_it_summarises_in_a_fixed_number_of_queries(make_host, django_assert_num_queries):
    host = make_host("ocr-1", {})
    snaps = [_snapshot(host, {f"f{i}.bin": (i, str(i)) for i in range(n)}, 30 - n) for n in range(1, 12)]
    with django_assert_num_queries(2):
        change_summaries(list(reversed(snaps)))


def test_it_counts_a_file_no_other_host_holds_as_the_last_copy(make_host):
    one = make_host("ocr-1", {"shared.bin": 1, "only-here.bin": 2})
    make_host("ocr-2", {"shared.bin": 1})
    shared, only = sha("shared.bin"), sha("only-here.bin")
    assert hashes_elsewhere(one, [shared, only]) == {shared}


def test_it_does_not_count_retired_hosts_or_old_snapshots_as_copies(make_host):
    one = make_host("ocr-1", {"a.bin": 1})
    make_host("ocr-old", {"a.bin": 1}, status=Host.Status.RETIRED)
    moved = make_host("ocr-2", {"a.bin": 1})
    # ocr-2 held it once, but its current inventory no longer does.
    newer = _snapshot(moved, {"other.bin": (5, "o")}, 0)
    moved.current_snapshot = newer
    moved.save()
    assert hashes_elsewhere(one, [sha("a.bin")]) == set()


def test_it_asks_once_for_all_items(make_host, django_assert_num_queries):
    one = make_host("ocr-1", {f"m{i}.bin": i for i in range(50)})
    make_host("ocr-2", {"m3.bin": 3})
    with django_assert_num_queries(1):
        found = hashes_elsewhere(one, [sha(f"m{i}.bin") for i in range(50)])
    assert found == {sha("m3.bin")}
