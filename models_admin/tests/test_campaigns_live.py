"""A campaign end to end on three real agents and the real ingest worker: a failure in the canary
halts the rest; once fixed, a new campaign runs the canary, then the rest, and the files really
move into each host's quarantine.

How the worker processes share this test's database and queues: see ``processes.py``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from models_admin.campaigns import plan, rollout
from models_admin.fleet import hosts, labels
from models_admin.models import Campaign, CampaignHost, Host, ModelFile
from workers.prune import QUARANTINE_DIR

from .processes import running_fleet

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
OLD = "old_fr_ocr_v1.bin"


def test_canary_failure_halts_then_a_campaign_rolls_out_in_waves(tmp_path: Path, operator, approver) -> None:
    run = uuid.uuid4().hex[:8]
    names = [f"camp-{letter}-{run}" for letter in "abc"]
    folders = {}
    for name in names:
        folder = tmp_path / name / "models"
        folder.mkdir(parents=True)
        (folder / "en_ocr_v2.gguf").write_bytes(b"english v2")
        (folder / OLD).write_bytes(b"old french model v1")
        folders[name] = folder
    canary = names[0]
    # The canary cannot quarantine anything: its quarantine's place is taken by a plain file.
    (folders[canary] / QUARANTINE_DIR).write_bytes(b"not a folder")
    env = {"OCRDASH_HEARTBEAT_SECONDS": "2"}
    with running_fleet(
        canary, folders[canary], tmp_path, agent_env=env, more_hosts=dict(list(folders.items())[1:])
    ) as fleet:
        wait_for = fleet.wait_for
        wait_for(
            "three first inventories",
            lambda: Host.objects.filter(name__in=names, current_snapshot__isnull=False).count() == 3,
            timeout=180,
        )
        for host in Host.objects.filter(name__in=names):
            hosts.accept_host(host, approver)
            labels.set_labels(host, {"env": "camp", "run": run}, approver)
        old = ModelFile.objects.filter(name=OLD, snapshot__host__name=canary).first()
        spec = plan.Spec(
            target_kind=Campaign.Target.SELECTOR,
            selector={"run": run},
            rule_kind=Campaign.Rule.IDENTITY,
            model_name=OLD,
            model_sha256=old.sha256,
        )

        first = rollout.propose(spec, user=operator, reason="old French model")
        rollout.approve(first.id, approver, allow_last_copy=True)
        first = wait_for(
            "the canary's failure to halt the campaign",
            lambda: Campaign.objects.filter(pk=first.pk, state=Campaign.State.HALTED).first(),
            timeout=120,
        )
        assert first.halt_reason.startswith("canary wave: 1 of 1 host failed") and canary in first.halt_reason
        assert list(first.requests.values_list("host__name", flat=True)) == [canary]
        assert all((folders[n] / OLD).exists() for n in names)  # nothing else was sent

        (folders[canary] / QUARANTINE_DIR).unlink()
        second = rollout.propose(spec, user=operator, reason="old French model, again")
        rollout.approve(second.id, approver, allow_last_copy=True)
        second = wait_for(
            "the campaign to complete",
            lambda: Campaign.objects.filter(pk=second.pk, state=Campaign.State.COMPLETED).first(),
            timeout=180,
        )
        parts = {
            p.host.name: p for p in CampaignHost.objects.filter(campaign=second).select_related("request")
        }
        assert parts[canary].wave == 0 and {parts[n].wave for n in names[1:]} == {1}
        # The rest was sent only after the canary's answer came back.
        canary_done = parts[canary].request.finished_at
        assert canary_done is not None
        for name in names[1:]:
            sent_at = parts[name].request.dispatched_at
            assert sent_at is not None and sent_at >= canary_done
        assert {p.state for p in parts.values()} == {CampaignHost.State.DONE}
        assert rollout.bytes_moved(second) == 3 * len(b"old french model v1")
        for name in names:
            assert not (folders[name] / OLD).exists()
            assert [p.name for p in (folders[name] / QUARANTINE_DIR).rglob(OLD)] == [OLD]
