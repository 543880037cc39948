"""Scheduled capacity policies: kept as beat rows, run per host or per group, proposing only.

The runs are what beat executes (the task with the row's own kwargs); each host of a run gets
one POLICY_RUN audit event saying what was proposed or why nothing.
"""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import PeriodicTask

from models_admin import tasks
from models_admin.capacity import policies, scheduled
from models_admin.fleet import labels
from models_admin.models import AuditEvent, Host, PruneRequest

pytestmark = pytest.mark.django_db
GB = 10**9
FILES = {"a.gguf": 3 * GB, "b.gguf": 2 * GB, "c.gguf": 1 * GB}


def used(host: Host, pct: int) -> None:
    Host.objects.filter(pk=host.pk).update(disk_total=100 * GB, disk_free=(100 - pct) * GB)


def beat_run(name: str) -> list[dict]:
    """Run the beat row ``name`` as beat would: its task with its stored kwargs."""
    row = PeriodicTask.objects.get(name=name)
    assert row.task == scheduled.POLICY_TASK and row.enabled
    return tasks.scheduled_policy(**json.loads(row.kwargs))


def runs() -> list[dict]:
    return [
        {"host": e.host, **e.details}
        for e in AuditEvent.objects.filter(action=AuditEvent.Action.POLICY_RUN).order_by("id")
    ]


def test_a_group_watermark_schedule_proposes_on_the_hosts_over_its_marks_and_says_why_not_elsewhere(
    make_host, approver
):
    full, fine, other = (make_host(n, FILES) for n in ("ocr-full", "ocr-fine", "ocr-other"))
    for h in (full, fine):
        labels.set_labels(h, {"env": "prod"}, approver)
    group = labels.save_group("prod", user=approver, selector={"env": "prod"})
    scheduled.set_group_marks(group, 70, 60, approver)
    used(full, 74)  # over 70: needs 14 GB... only 6 GB here, so every safe file
    used(fine, 65)
    used(other, 99)  # not in the group

    assert scheduled.set_schedule("watermark", 60, approver, group=group, params={"high": 10, "low": 5})
    row = PeriodicTask.objects.get(name="ocrdash: policy watermark on group prod")
    assert json.loads(row.kwargs)["params"] == {"allow_known": 0, "allow_last_copy": 0}  # marks: the group's
    assert not scheduled.set_schedule("watermark", 60, approver, group=group)  # unchanged: no audit row

    outcome = beat_run("ocrdash: policy watermark on group prod")
    assert [o["schedule"] for o in outcome] == ["group prod"] * 2
    request = PruneRequest.objects.get(host=full)
    assert request.state == PruneRequest.State.PROPOSED and request.policy == "watermark"  # never approved
    assert request.items.count() == 3
    assert not PruneRequest.objects.filter(host__in=[fine, other]).exists()
    [on_fine, on_full] = sorted(runs(), key=lambda r: r["host"])
    assert on_full["proposed"] == str(request.id) and on_full["bytes"] == 6 * GB
    assert on_full["summary"].startswith(f"proposed request {request.short_id}: 3 file(s)")
    assert on_fine["proposed"] is None
    assert on_fine["why_nothing"] == "disk 65 % used, not over the high mark of 70 %"

    # The next run finds the files already in the open request and says so.
    beat_run("ocrdash: policy watermark on group prod")
    assert PruneRequest.objects.filter(host=full).count() == 1
    assert runs()[-1]["why_nothing"] == "nothing to propose: 3 file(s) already in an open request"

    # Changing the group's marks applies at the next run, with no schedule change.
    scheduled.set_group_marks(group, 60, 50, approver)
    beat_run("ocrdash: policy watermark on group prod")
    assert PruneRequest.objects.filter(host=fine, state=PruneRequest.State.PROPOSED).exists()


def test_a_host_not_used_for_schedule_and_its_removal(make_host, approver):
    host = make_host("ocr-1", FILES)
    make_host("ocr-2", FILES)  # so no file is the fleet's last copy
    scheduled.set_schedule("not_used_for", 24 * 60, approver, host=host, params={"days": 30})
    [outcome] = beat_run("ocrdash: policy not_used_for on host ocr-1")
    request = PruneRequest.objects.get(pk=outcome["proposed"])
    assert (request.host, request.state, request.policy) == (
        host,
        PruneRequest.State.PROPOSED,
        "not_used_for",
    )
    assert "scheduled on host ocr-1" in request.reason
    settings_events = AuditEvent.objects.filter(action=AuditEvent.Action.SETTINGS_CHANGED)
    assert settings_events.filter(details__setting="policy_schedule:not_used_for:host:ocr-1").count() == 1

    assert scheduled.set_schedule("not_used_for", None, approver, host=host)
    assert not PeriodicTask.objects.filter(task=scheduled.POLICY_TASK).exists()
    assert [s.policy for s in scheduled.all_schedules()] == []


def test_schedules_refuse_what_would_fail_at_every_run(make_host, approver):
    host = make_host("ocr-1", FILES)
    cases: list[tuple[str, int, dict, str]] = [
        ("prefix", 60, {}, "only watermark, not_used_for can be scheduled"),
        ("watermark", 60, {"high": 50, "low": 60}, "need low < high"),
        ("not_used_for", 60, {"days": "soon"}, "days must be a whole number"),
        ("not_used_for", 1, {}, "between 15 minutes and 7 days"),
    ]
    for policy, minutes, params, words in cases:
        with pytest.raises(policies.PolicyError, match=words):
            scheduled.set_schedule(policy, minutes, approver, host=host, params=params)
    group = labels.save_group("g", user=approver, selector={"env": "prod"})
    with pytest.raises(ValueError, match="low < high"):
        scheduled.set_group_marks(group, 60, 70, approver)
    assert not PeriodicTask.objects.filter(task=scheduled.POLICY_TASK).exists()


def test_the_settings_page_schedules_a_policy_and_sets_a_groups_marks(
    client_for, make_host, approver, viewer
):
    make_host("ocr-1", FILES)
    labels.save_group("prod", user=approver, selector={"env": "prod"})
    web = client_for(approver)
    assert web.post("/settings/watermark/", {"group": "prod", "high": "75", "low": "70"}).status_code == 302
    answer = web.post(
        "/settings/policy/", {"policy": "watermark", "group": "prod", "minutes": "120"}, follow=True
    )
    assert "Schedule of watermark on group prod saved." in answer.content.decode()
    web.post(
        "/settings/policy/", {"policy": "not_used_for", "host": "ocr-1", "minutes": "1440", "days": "45"}
    )
    refused = web.post(
        "/settings/policy/", {"policy": "not_used_for", "host": "ocr-1", "minutes": "5"}, follow=True
    )
    assert "between 15 minutes and 7 days" in refused.content.decode()

    page = web.get("/settings/").content.decode()
    table = page[page.index('id="policy-schedules"') : page.index('id="policy-form"')]
    assert "<td>group prod</td><td>2 hours</td>" in table and "<td>day</td>" in table
    assert "days=45" in table and 'href="/hosts/ocr-1/"' in table
    marks = page[page.index('id="group-marks"') :]
    assert "<td>prod</td><td>75 %</td><td>70 %</td>" in marks
    assert [(s.policy, s.group or s.host) for s in scheduled.all_schedules()] == [
        ("not_used_for", "ocr-1"),
        ("watermark", "prod"),
    ]
    assert (
        client_for(viewer).post("/settings/watermark/", {"group": "prod", "high": "", "low": ""}).status_code
        == 403
    )
    web.post("/settings/policy/", {"policy": "watermark", "group": "prod", "minutes": ""})  # removed
    assert [s.policy for s in scheduled.all_schedules()] == ["not_used_for"]
