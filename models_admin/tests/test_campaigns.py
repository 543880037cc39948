"""Campaigns: preview, one approval, waves, halts, and the last copy in the fleet."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.campaigns import plan, rollout
from models_admin.fleet import hosts, labels
from models_admin.inventory import reports
from models_admin.models import (
    AuditEvent,
    Campaign,
    CampaignHost,
    Host,
    Notification,
    PruneItem,
    PruneRequest,
)
from models_admin.tests.conftest import ingest, sha
from workers.schema import ItemOutcome, Outcome, PurgedRequest, PurgeReport

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
OLD = "old_fr_ocr_v1.bin"


@pytest.fixture
def prod(make_host, approver):
    """Five prod hosts holding the old model (ocr-1..5), one eu host outside prod (ocr-6)."""
    hosts = []
    for i in range(1, 7):
        host = make_host(f"ocr-{i}", {"en_ocr_v1.gguf": 2_000, OLD: 1_000})
        labels.set_labels(
            host, {"env": "prod" if i <= 5 else "dev", "region": "eu" if i % 2 else "us"}, approver
        )
        hosts.append(host)
    return hosts


def spec(**kw) -> plan.Spec:
    kw.setdefault("target_kind", Campaign.Target.SELECTOR)
    kw.setdefault("selector", {"env": "prod"})
    kw.setdefault("rule_kind", Campaign.Rule.IDENTITY)
    kw.setdefault("model_name", OLD)
    kw.setdefault("model_sha256", sha(OLD))
    return plan.Spec(**kw)


def finish(request: PruneRequest, outcome: Outcome, capture) -> None:
    """The host's answer: every item ends with ``outcome`` (what ingest does with a report)."""
    with capture(execute=True), transaction.atomic():
        workflow.record_outcomes(
            request.id,
            [ItemOutcome(path=i.path, outcome=outcome, bytes_reclaimed=i.size) for i in request.items.all()],
        )


def sent(campaign: Campaign) -> list[PruneRequest]:
    return list(campaign.requests.select_related("host").order_by("host__name"))


def test_preview_lists_files_bytes_and_skipped_hosts_with_reasons(prod, make_host, approver) -> None:
    Host.objects.filter(name="ocr-2").update(status=Host.Status.RETIRED)
    Host.objects.filter(name="ocr-3").update(last_seen=timezone.now() - timedelta(days=3))
    labels.set_labels(make_host("ocr-7", {"en_ocr_v1.gguf": 10}), {"env": "prod"}, approver)
    # Says "env=prod" itself, but only approver-set labels target a host.
    Host.objects.filter(name="ocr-6").update(reported_labels={"env": "prod"})
    preview = plan.preview(spec())
    by_name = {p.host.name: p for p in preview.hosts}
    assert set(by_name) == {"ocr-1", "ocr-2", "ocr-3", "ocr-4", "ocr-5", "ocr-7"}
    assert by_name["ocr-2"].skipped == "retired"
    assert by_name["ocr-3"].skipped.startswith("missing since")
    assert by_name["ocr-7"].skipped == "nothing matches the rule"
    assert [p.host.name for p in preview.planned] == ["ocr-1", "ocr-4", "ocr-5"]
    assert [f["path"] for f in by_name["ocr-1"].files] == [OLD] and preview.bytes == 3_000
    assert [p.wave for p in preview.planned] == [0, 1, 1] and preview.wave_count == 2
    # ocr-6 (dev) and ocr-2 still hold it: no last-copy warning.
    assert preview.warnings == [] and preview.kept_count == 0


def test_waves_by_size_and_percentage(prod) -> None:
    assert [p.wave for p in plan.preview(spec(wave_size=2)).planned] == [0, 1, 1, 2, 2]
    assert [p.wave for p in plan.preview(spec(wave_percent=50)).planned] == [0, 1, 1, 2, 2]
    assert [p.wave for p in plan.preview(spec(canary_size=2)).planned] == [0, 0, 1, 1, 1]
    bad_specs: tuple[dict[str, Any], ...] = (
        {"canary_size": 0},
        {"wave_percent": 101},
        {"selector": {}},
        {"failure_threshold": 1.5},
    )
    for bad in bad_specs:
        with pytest.raises(plan.PlanError):
            plan.preview(spec(**bad))


def test_a_policy_rule_selects_per_host(prod) -> None:
    preview = plan.preview(
        spec(rule_kind=Campaign.Rule.POLICY, policy="prefix", model_name="", model_sha256="")
    )
    assert all([f["path"] for f in p.files] == [OLD] for p in preview.planned) and len(preview.planned) == 5


def test_the_last_copy_in_the_fleet_is_kept_unless_the_approver_allows(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    target = spec(target_kind=Campaign.Target.MODEL, selector={})
    preview = plan.preview(target)
    assert len(preview.planned) == 6 and preview.kept_count == 1
    kept = [p for p in preview.planned if p.files[0]["kept"]]
    assert [p.host.name for p in kept] == ["ocr-6"] and "kept unless the approver" in preview.warnings[0]
    for i in range(1, 7):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(target, user=operator, reason="drop the old French model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    # Roll every wave through; ocr-6's part has nothing left to remove.
    while (campaign := Campaign.objects.get(pk=campaign.pk)).state == Campaign.State.RUNNING:
        for request in campaign.requests.filter(state=PruneRequest.State.DISPATCHED):
            finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    assert campaign.state == Campaign.State.COMPLETED
    assert "ocr-6" not in {r.host.name for r in sent(campaign)} and len(sent(campaign)) == 5
    assert CampaignHost.objects.get(campaign=campaign, host__name="ocr-6").note.startswith("nothing left")

    allowed = rollout.propose(
        spec(
            target_kind=Campaign.Target.MODEL,
            selector={},
            model_name="en_ocr_v1.gguf",
            model_sha256=sha("en_ocr_v1.gguf"),
        ),
        user=operator,
        reason="all of it",
    )
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(allowed.id, approver, allow_last_copy=True)
    while (allowed := Campaign.objects.get(pk=allowed.pk)).state == Campaign.State.RUNNING:
        for request in allowed.requests.filter(state=PruneRequest.State.DISPATCHED):
            finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    assert allowed.state == Campaign.State.COMPLETED and len(sent(allowed)) == 6


def test_approval_starts_the_canary_then_the_next_wave_after_it_finished(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    queues = {f"ocr-{i}": host_queue(f"ocr-{i}") for i in range(1, 6)}
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    assert campaign.state == Campaign.State.PROPOSED and not campaign.requests.exists()
    with pytest.raises(rollout.NotAllowed):
        rollout.approve(campaign.id, operator)
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver, comment="go")
    [canary] = sent(campaign)
    assert canary.host.name == "ocr-1" and canary.state == PruneRequest.State.DISPATCHED
    assert (
        canary.decided_by == approver
        and canary.requested_by == operator
        and canary.campaign_id == campaign.id
    )
    assert [task for task, _ in queues["ocr-1"].drain()] == ["ocrdash.agent.prune"]
    assert queues["ocr-4"].drain() == []

    finish(canary, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.current_wave == 1 and [r.host.name for r in sent(campaign)] == [
        f"ocr-{i}" for i in range(1, 6)
    ]
    for request in sent(campaign)[1:]:
        finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.COMPLETED and rollout.bytes_moved(campaign) == 5_000
    # The proposer hears of the campaign once, not once per host (Notification rows per event).
    told = list(Notification.objects.filter(user=operator).values_list("event", flat=True))
    assert told.count("campaign_finished") == 1 and "request_finished" not in told
    # Quarantined: moved aside, still on the hosts' disks; nothing is freed until a purge.
    progress = rollout.progress(campaign)
    assert (progress.bytes_in_quarantine, progress.bytes_freed) == (5_000, 0)
    # The exports (CSV and JSON share deletion_row) name the campaign of every removed file.
    items = PruneItem.with_restored(PruneItem.objects.filter(request__campaign=campaign))
    rows = [reports.deletion_row(i) for i in items]
    assert len(rows) == 5 and {r["campaign_id"] for r in rows} == {str(campaign.id)}
    actions = list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign.id))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        A.CAMPAIGN_PROPOSED,
        A.CAMPAIGN_APPROVED,
        A.WAVE_STARTED,
        A.WAVE_FINISHED,
        A.WAVE_STARTED,
        A.WAVE_FINISHED,
        A.CAMPAIGN_FINISHED,
    ]


def test_the_campaigns_disk_figures_are_its_requests_counters_added_up(
    prod, operator, approver, approver2, host_queue, django_capture_on_commit_callbacks
) -> None:
    """Five hosts quarantined the old model (1,000 bytes each); one moved it back, one purged
    its quarantine. The campaign's figures are its requests' own counters added up (the page's
    rows): 3,000 in quarantine, 1,000 freed. They were once summed over the items, which still
    say "quarantined" after a restore: 4,000 in quarantine, a file back in its folder among them."""
    for i in range(1, 6):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(spec(canary_size=5), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    parts = sent(campaign)
    assert len(parts) == 5
    for request in parts:
        finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    restored, purged = parts[0], parts[1]

    restore = workflow.propose_restore(prune_request=restored, user=approver, reason="still needed")
    with django_capture_on_commit_callbacks(execute=True):
        workflow.approve(restore.id, approver2)
    finish(restore, Outcome.RESTORED, django_capture_on_commit_callbacks)
    ingest(
        PurgeReport(
            host=purged.host.name,
            purged_requests=[purged.id.hex],
            bytes_purged=1_000,
            purged=[PurgedRequest(request_id=purged.id.hex, bytes_purged=1_000, files=1)],
            freed=True,
        )
    )

    progress = rollout.progress(campaign)
    rows = [rollout.part_bytes(r) for r in campaign.requests.all()]
    assert (progress.bytes_in_quarantine, progress.bytes_freed) == (3_000, 1_000)
    assert (sum(q for q, _ in rows), sum(f for _, f in rows)) == (3_000, 1_000)


def test_a_failed_canary_halts_the_rest_and_says_why(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    host_queue("ocr-1")
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    [canary] = sent(campaign)
    finish(canary, Outcome.ERROR, django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.HALTED
    assert (
        campaign.halt_reason.startswith("canary wave: 1 of 1 host failed") and "ocr-1" in campaign.halt_reason
    )
    assert len(sent(campaign)) == 1
    assert set(campaign.hosts.exclude(host__name="ocr-1").values_list("state", flat=True)) == {"cancelled"}
    with pytest.raises(rollout.WrongState):
        rollout.resume(campaign.id, approver)


def test_a_threshold_lets_a_wave_with_few_failures_go_on(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 6):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(spec(failure_threshold=0.5), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    finish(sent(campaign)[0], Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    first, *rest = sent(campaign)[1:]
    finish(first, Outcome.ERROR, django_capture_on_commit_callbacks)
    for request in rest:
        finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    assert Campaign.objects.get(pk=campaign.pk).state == Campaign.State.COMPLETED  # 1 of 4 under 50%


def test_pause_resume_and_cancel(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 6):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    rollout.pause(campaign.id, approver)
    finish(sent(campaign)[0], Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    assert len(sent(campaign)) == 1  # paused: the canary finished, nothing else started
    with django_capture_on_commit_callbacks(execute=True):
        rollout.resume(campaign.id, approver)
    assert len(sent(campaign)) == 5
    rollout.cancel(campaign.id, approver, comment="enough")
    assert Campaign.objects.get(pk=campaign.pk).state == Campaign.State.CANCELLED
    with pytest.raises(rollout.WrongState):
        rollout.pause(campaign.id, approver)


def test_a_host_retired_during_a_campaign_is_skipped_and_the_campaign_finishes(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 6):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    finish(sent(campaign)[0], Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    # ocr-4's part was sent with wave 1; the host is retired before it answers.
    with django_capture_on_commit_callbacks(execute=True):
        hosts.retire_host(Host.objects.get(name="ocr-4"), approver)
    for request in campaign.requests.exclude(host__name__in=["ocr-1", "ocr-4"]):
        finish(request, Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.COMPLETED
    part = CampaignHost.objects.get(campaign=campaign, host__name="ocr-4")
    assert part.state == CampaignHost.State.SKIPPED and part.skip_reason == "retired during the campaign"


def test_a_host_retired_before_its_wave_starts_is_skipped(
    prod, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 6):
        host_queue(f"ocr-{i}")
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
    hosts.retire_host(Host.objects.get(name="ocr-5"), approver)
    finish(sent(campaign)[0], Outcome.QUARANTINED, django_capture_on_commit_callbacks)
    assert [r.host.name for r in sent(campaign)] == ["ocr-1", "ocr-2", "ocr-3", "ocr-4"]
    assert CampaignHost.objects.get(campaign=campaign, host__name="ocr-5").state == CampaignHost.State.SKIPPED


def test_a_proposal_expires_and_can_be_rejected(prod, operator, approver) -> None:
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    Campaign.objects.filter(pk=campaign.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(rollout.WrongState, match="expired"):
        rollout.approve(campaign.id, approver)
    other = rollout.propose(spec(), user=operator, reason="again")
    rollout.reject(other.id, approver, comment="not now")
    assert Campaign.objects.get(pk=other.pk).state == Campaign.State.REJECTED
    with pytest.raises(rollout.CampaignError, match="reason"):
        rollout.propose(spec(), user=operator, reason=" ")
    with pytest.raises(rollout.CampaignError, match="no host"):
        rollout.propose(spec(selector={"env": "nowhere"}), user=operator, reason="x")


# serialized_rollback: the flush after a transaction test must not lose the migrations' groups.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_approvers_at_once_exactly_one_wins(prod, operator, approver, approver2, host_queue) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    host_queue("ocr-1")
    campaign = rollout.propose(spec(), user=operator, reason="old model")
    barrier = threading.Barrier(2)
    results: list[str] = []

    def decide(user) -> None:
        try:
            barrier.wait(timeout=10)
            rollout.approve(campaign.id, user)
            results.append("won")
        except rollout.WrongState:
            results.append("lost")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(u,)) for u in (approver, approver2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["lost", "won"]
    assert AuditEvent.objects.filter(action=A.CAMPAIGN_APPROVED, object_id=str(campaign.id)).count() == 1
    assert Campaign.objects.get(pk=campaign.pk).requests.count() == 1


def test_a_watermark_campaign_without_marks_uses_the_fleets_default_marks(prod, settings) -> None:
    """Empty marks mean the configured default (watermarks.default_marks), not fixed numbers."""
    settings.OCRDASH = {**settings.OCRDASH, "WATERMARK_HIGH": 70, "WATERMARK_LOW": 60}
    for empty in ({}, {"high": "", "low": None}):
        watermark = spec(
            rule_kind=Campaign.Rule.POLICY,
            policy="watermark",
            policy_params=empty,
            model_name="",
            model_sha256="",
        )
        assert plan.preview(watermark).cleaned_params == {
            "high": 70,
            "low": 60,
            "allow_known": 0,
            "allow_last_copy": 0,
        }
