"""The "free X GB" planner on generated hosts: frees at least X, and no shorter prefix of its order does."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin.capacity import candidates, planner
from models_admin.models import FileUsage, Host, ModelFile, PruneRequest

pytestmark = pytest.mark.django_db
GB = 10**9


def generated_host(make_host, seed: int) -> Host:
    """A host of 40 files of random sizes and uses; half of them also on a second host."""
    rng = random.Random(seed)
    files = {f"m/model_{i:02}.gguf": rng.randint(1, 900) * 10**6 for i in range(40)}
    host = make_host(f"gen-{seed}", files)
    copies = {p: s for i, (p, s) in enumerate(files.items()) if i % 2 == 0}
    make_host(f"gen-{seed}-mirror", copies)
    now = timezone.now()
    rows = []
    for i, path in enumerate(files):
        kind = rng.choice(["open_old", "open_recent", "atime_old", "atime_recent", "none", "in_use"])
        row = FileUsage(host=host, path=path, watched_since=now - timedelta(days=60), atime_mode="noatime")
        if kind in ("open_old", "open_recent"):
            row.last_open_at = now - timedelta(
                days=rng.randint(40, 90) if kind == "open_old" else rng.randint(0, 20)
            )
            row.last_open_by = "ocrd (pid 7)"
        elif kind in ("atime_old", "atime_recent"):
            row.atime_mode = "relatime"
            age = timedelta(days=rng.randint(31, 200) if kind == "atime_old" else rng.randint(0, 29))
            row.atime_ns = int((now - age).timestamp() * 1e9)
        elif kind == "in_use":
            row.open_by = [{"pid": 100 + i, "program": "python3", "how": "mmap"}]
        rows.append(row)
    FileUsage.objects.bulk_create(rows)
    return host


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_plan_frees_at_least_x_and_no_shorter_prefix_of_its_order_does(make_host, seed):
    host = generated_host(make_host, seed)
    found = candidates.collect(host, unused_days=30)
    order = found.ordered
    assert order, "the generated host must have proposable files"
    # The stated order: every unused file before every used one, unused largest first, used LRU.
    unused = [c for c in order if c.unused]
    used = [c for c in order if not c.unused]
    assert order == unused + used
    assert [c.size for c in unused] == sorted((c.size for c in unused), reverse=True)
    assert all(c.used_by is not None for c in used)
    assert [c.used_by for c in used] == sorted(c.used_by for c in used if c.used_by is not None)
    # Never in use, never the last copy (only the mirrored half may go), never excluded ones.
    paths = {c.file.path for c in order}
    assert all(not c.in_use_now for c in order)
    mirrored = set(
        Host.objects.get(name=f"gen-{seed}-mirror").current_snapshot.files.values_list("path", flat=True)
    )
    assert paths <= mirrored
    assert {c.excluded.split(" by ")[0] for c in found.excluded} <= {
        "in use now",
        "the last copy in the fleet",
    }

    available = sum(c.size for c in order)
    for need in [1, 10**6, available // 3, available // 2, available - 1, available, available + 1]:
        plan = planner.plan_host(host, max(1, need))
        chosen = [s.file.path for s in plan.steps]
        assert chosen == [c.file.path for c in order[: len(chosen)]], "a prefix of the stated order"
        assert plan.freed == sum(s.bytes for s in plan.steps)
        if need <= available:
            assert plan.enough and plan.freed >= need
            assert sum(s.bytes for s in plan.steps[:-1]) < need, "a shorter prefix would have done"
            if len(chosen) <= len(unused):
                # Inside the unused group no smaller set at all frees enough: largest first.
                k = len(chosen) - 1
                assert sum(sorted((c.size for c in unused), reverse=True)[:k]) < need
        else:
            assert not plan.enough and plan.freed == available and plan.short == need - available
        assert all(s.why for s in plan.steps)


def test_known_to_aspose_files_go_only_when_allowed(make_host):
    host = make_host("ocr-1", {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": 2 * GB, "old.gguf": 10})
    make_host("ocr-2", {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": 2 * GB, "old.gguf": 10})
    plan = planner.plan_host(host, GB)
    assert [s.file.path for s in plan.steps] == ["old.gguf"] and not plan.enough
    assert plan.excluded == {"Aspose loads this file": (1, 2 * GB)}
    allowed = planner.plan_host(host, GB, allow_known=True)
    assert [s.file.path for s in allowed.steps] == ["Llama-3.2-3B-Instruct-Q4_K_M.gguf"] and allowed.enough


def test_the_plan_becomes_a_request_only_while_it_is_what_was_shown(make_host, operator):
    host = make_host("ocr-1", {"a.gguf": 2 * GB, "b.gguf": GB})
    make_host("ocr-2", {"a.gguf": 2 * GB, "b.gguf": GB})
    shown = planner.plan_host(host, GB)
    keys = [(f.store, f.path) for f in shown.files]
    with pytest.raises(planner.PlanError, match="new inventory"):
        planner.propose(
            host, GB, user=operator, shown_snapshot_id=(shown.snapshot_id or 0) + 999, shown_paths=keys
        )
    request = planner.propose(host, GB, user=operator, shown_snapshot_id=shown.snapshot_id, shown_paths=keys)
    assert request.policy == "plan" and request.state == PruneRequest.State.PROPOSED
    assert list(request.items.values_list("path", flat=True)) == ["a.gguf"]
    assert request.reason.startswith(
        f"free 953.7 MB on {host.name}: plan of 1 file(s), 1.9 GB"
    )  # text, no markup
    # The same preview again: a.gguf is in the open request now, so the plan differs.
    with pytest.raises(planner.PlanError, match="plan changed"):
        planner.propose(host, GB, user=operator, shown_snapshot_id=shown.snapshot_id, shown_paths=keys)


@pytest.mark.parametrize(
    ("text", "expected"), [("1 GB", 2**30), ("500MB", 500 * 2**20), ("1.5 GiB", 3 * 2**29), ("42", 42)]
)
def test_amounts_are_read_in_the_units_the_pages_show(text, expected):
    assert planner.parse_amount(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1 GB", "0", "1 XB"])
def test_a_bad_amount_is_refused_with_a_reason(text):
    with pytest.raises(planner.PlanError, match="free"):
        planner.parse_amount(text)


def test_the_page_previews_and_one_click_proposes(make_host, operator, viewer, client_for):
    host = make_host("ocr-1", {"a.gguf": 2 * GB, "b.gguf": GB})
    make_host("ocr-2", {"a.gguf": 2 * GB, "b.gguf": GB})
    page = client_for(viewer).get("/hosts/ocr-1/plan/?free=1+GB")
    text = page.content.decode()
    assert page.status_code == 200 and "a.gguf" in text and "plan-propose" not in text  # viewers only look
    client = client_for(operator)
    text = client.get("/hosts/ocr-1/plan/?free=1+GB").content.decode()
    assert 'id="plan-propose"' in text
    answer = client.post(
        "/hosts/ocr-1/plan/propose/",
        {"free": "1 GB", "snapshot": host.current_snapshot_id, "unused_days": "30", "file": ["llm:a.gguf"]},
    )
    request = PruneRequest.objects.get(host=host)
    assert answer.status_code == 302 and answer["Location"].endswith(f"/requests/{request.id}/")
    assert client_for(viewer).post("/hosts/ocr-1/plan/propose/", {"free": "1 GB"}).status_code == 403
    assert client.get("/hosts/ocr-1/plan/propose/").status_code == 405
    assert ModelFile.objects.filter(snapshot=host.current_snapshot).count() == 2


def _use(host, path, **kw):
    FileUsage.objects.create(host=host, path=path, watched_since=timezone.now() - timedelta(days=90), **kw)


def test_not_used_for_goes_by_last_seen_open_then_atime_never_mtime(make_host):
    from models_admin.capacity import policies

    host = make_host(
        "ocr-1", {"seen_old.gguf": 10, "seen_new.gguf": 10, "atime_old.gguf": 10, "noatime.gguf": 10}
    )
    make_host("ocr-2", {"seen_old.gguf": 10, "seen_new.gguf": 10, "atime_old.gguf": 10, "noatime.gguf": 10})
    now = timezone.now()
    _use(host, "seen_old.gguf", last_open_at=now - timedelta(days=40), last_open_by="ocrd (pid 1)")
    # A recent sighting wins over an old atime: it is used, whatever its mtime (2023) says.
    old_atime = int((now - timedelta(days=100)).timestamp() * 1e9)
    _use(
        host, "seen_new.gguf", last_open_at=now - timedelta(days=2), atime_ns=old_atime, atime_mode="relatime"
    )
    _use(host, "atime_old.gguf", atime_ns=old_atime, atime_mode="relatime")
    # noatime says nothing; never seen open in 90 days of looks: counts as unused since then.
    _use(host, "noatime.gguf", atime_ns=int(now.timestamp() * 1e9), atime_mode="noatime")
    picked = policies.select(host, "not_used_for", {"days": 30})
    assert sorted(f.path for f in picked.files) == ["atime_old.gguf", "noatime.gguf", "seen_old.gguf"]
    assert policies.select(host, "not_used_for", {"days": 120}).files == []


def test_the_watermark_proposes_lru_until_under_the_low_mark_and_nothing_below_the_high(make_host):
    from models_admin.capacity import policies

    host = make_host("ocr-1", {"a.gguf": 40, "b.gguf": 30, "c.gguf": 20, "busy.gguf": 500})
    make_host("ocr-2", {"a.gguf": 40, "b.gguf": 30, "c.gguf": 20, "busy.gguf": 500})
    now = timezone.now()
    for days, path in ((50, "b.gguf"), (20, "a.gguf"), (10, "c.gguf")):
        _use(host, path, last_open_at=now - timedelta(days=days), last_open_by="x (pid 1)")
    _use(host, "busy.gguf", open_by=[{"pid": 9, "program": "python3", "how": "fd"}])
    Host.objects.filter(pk=host.pk).update(disk_total=1000, disk_free=100)  # 90 % used
    host.refresh_from_db()
    # Down to 80 % means freeing 100 bytes: b (oldest, 30) then a (40) then c (20) = 90 < 100,
    # and busy.gguf is in use: all three, not enough, never the held one.
    assert [f.path for f in policies.select(host, "watermark").files] == ["b.gguf", "a.gguf", "c.gguf"]
    assert [f.path for f in policies.select(host, "watermark", {"low": 83}).files] == ["b.gguf", "a.gguf"]
    Host.objects.filter(pk=host.pk).update(disk_free=200)  # 80 %: under the high mark
    host.refresh_from_db()
    assert policies.select(host, "watermark").files == []
    with pytest.raises(policies.PolicyError, match="low < high"):
        policies.select(host, "watermark", {"low": 90, "high": 85})


def test_a_group_plan_previews_each_host_and_becomes_a_campaign_running_the_same_plan(
    make_host, client_for, operator, approver, viewer
):
    from models_admin.campaigns import plan as campaign_plan
    from models_admin.fleet import labels
    from models_admin.models import Campaign

    hosts = [generated_host(make_host, seed) for seed in (4, 5)]
    for h in hosts:
        labels.set_labels(h, {"env": "prod"}, approver)
    group = labels.save_group("prod", user=approver, selector={"env": "prod"})
    need = 1 * 2**30
    preview = planner.plan_group(group, need)
    assert [p.host.name for p in preview.plans] == ["gen-4", "gen-5"]  # the mirrors are not in the group
    for p in preview.plans:
        alone = planner.plan_host(p.host, need)
        assert [s.file.path for s in p.steps] == [s.file.path for s in alone.steps] and p.freed >= need

    page = client_for(viewer).get("/groups/prod/plan/", {"free": "1 GB"}).content.decode()
    assert (
        "Free space on each host of group prod" in page and 'id="plan-campaign"' not in page
    )  # may not propose
    web = client_for(operator)
    page = web.get("/groups/prod/plan/", {"free": "1 GB"}).content.decode()
    assert f"{preview.files} files" in page and 'id="plan-campaign"' in page

    answer = web.post("/groups/prod/plan/campaign/", {"free": "1 GB", "unused_days": "30"})
    campaign = Campaign.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/campaigns/{campaign.id}/"
    assert campaign.state == Campaign.State.PROPOSED and campaign.target_group == group
    assert (campaign.policy, campaign.policy_params["bytes"]) == ("free_space", need)
    assert campaign.reason == "free 1.0 GB on each host of group prod"
    # The campaign's plan per host is the preview's (the same order, the same inventories).
    spec = campaign_plan.Spec(
        target_kind=Campaign.Target.GROUP,
        rule_kind=Campaign.Rule.POLICY,
        group=group,
        policy="free_space",
        policy_params=campaign.policy_params,
    )
    planned = {h.host.name: sorted(f["path"] for f in h.files) for h in campaign_plan.preview(spec).hosts}
    assert planned == {p.host.name: sorted(s.file.path for s in p.steps) for p in preview.plans}


def test_a_refused_proposal_goes_back_to_the_preview_of_the_same_question(
    make_host, client_for, operator, approver
):
    from urllib.parse import parse_qs, urlsplit

    from models_admin.fleet import labels

    host = make_host("ocr-1", {"a.gguf": 2 * GB})
    labels.set_labels(host, {"env": "prod"}, approver)
    labels.save_group("prod", user=approver, selector={"env": "prod"})
    web = client_for(operator)
    asked = {"free": "lots", "unused_days": "12", "allow_known": "1", "allow_last_copy": "1"}
    for url, back in (
        ("/hosts/ocr-1/plan/propose/", "/hosts/ocr-1/plan/"),
        ("/groups/prod/plan/campaign/", "/groups/prod/plan/"),
    ):
        answer = web.post(url, {**asked, "snapshot": host.current_snapshot_id})
        where = urlsplit(answer["Location"])
        assert answer.status_code == 302 and where.path == back
        assert {k: v[0] for k, v in parse_qs(where.query).items()} == asked
        # The preview it goes back to says why, with the same knobs set.
        page = web.get(answer["Location"]).content.decode()
        assert 'value="12"' in page and 'name="allow_known" value="1" id="allow_known" checked' in page
    assert not PruneRequest.objects.exists()
    # The group's preview links each host's own preview with the same question.
    page = web.get("/groups/prod/plan/", {**asked, "free": "1 GB"}).content.decode()
    assert "/hosts/ocr-1/plan/?free=1+GB&amp;unused_days=12&amp;allow_known=1&amp;allow_last_copy=1" in page
