"""The watermark run by hand from the host page: its marks default to the host's own watermark."""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_admin.capacity import policies, scheduled
from models_admin.fleet import labels
from models_admin.models import Host, PruneRequest

pytestmark = pytest.mark.django_db


@pytest.fixture
def east(make_host, approver) -> Host:
    """A host of group east (marks 70 / 60) whose disk is 75 % used: over its mark, under 85 %."""
    host = make_host("ocr-east", {"a.gguf": 40, "b.gguf": 30})
    make_host("ocr-mirror", {"a.gguf": 40, "b.gguf": 30})  # neither file is the fleet's last copy
    labels.set_labels(host, {"region": "east"}, approver)
    group = labels.save_group("east", user=approver, selector={"region": "east"})
    scheduled.set_group_marks(group, 70, 60, approver)
    Host.objects.filter(pk=host.pk).update(disk_total=1000, disk_free=250)
    host.refresh_from_db()
    return host


def _inputs(page: str) -> list[str]:
    """The placeholders of the watermark row's high and low inputs."""
    row = page[page.index('name="policy" value="watermark"') :]
    row = row[: row.index("</form>")]
    return [chunk.split('"', 1)[0] for chunk in row.split('placeholder="')[1:3]]


def test_the_form_shows_the_hosts_group_marks_and_an_empty_run_proposes_by_them(east, client_for, operator):
    web = client_for(operator)
    page = web.get(reverse("ocrdash-host", args=["ocr-east"])).content.decode()
    assert _inputs(page) == ["high: 70", "low: 60"]

    web.post(
        reverse("ocrdash-host-propose-policy", args=["ocr-east"]),
        {"policy": "watermark", "high": "", "low": "", "reason": ""},
    )
    prune = PruneRequest.objects.get(host=east)
    assert prune.policy == "watermark" and "high=70, low=60" in prune.reason
    assert sorted(prune.items.values_list("path", flat=True)) == ["a.gguf", "b.gguf"]


def test_the_hosts_own_schedule_wins_and_a_mark_typed_in_wins_over_both(east, client_for, operator, approver):
    scheduled.set_schedule("watermark", 60, approver, host=east, params={"high": 50, "low": 40})
    page = client_for(operator).get(reverse("ocrdash-host", args=["ocr-east"])).content.decode()
    assert _inputs(page) == ["high: 50", "low: 40"]
    assert policies.select(east, "watermark").params["high"] == 50
    assert policies.select(east, "watermark", {"high": 80, "low": 45}).files == []  # 75 % is under 80


def test_a_host_in_no_group_keeps_the_default_marks(make_host, client_for, operator, settings) -> None:
    make_host("ocr-1", {"a.gguf": 40})
    page = client_for(operator).get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    high, low = settings.OCRDASH["WATERMARK_HIGH"], settings.OCRDASH["WATERMARK_LOW"]
    assert _inputs(page) == [f"high: {high}", f"low: {low}"]
