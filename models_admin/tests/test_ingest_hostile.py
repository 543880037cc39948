"""Ingest of hostile and non-UTF-8 input: every rejection is stored, every byte name is kept.

Each case here once either lost the report without a trace (a lone surrogate or NaN made
storing the rejection fail), ended as an internal error (NUL, integers beyond int64), or
froze a host's inventory (a file name that is not UTF-8).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models_admin.ingest import ingest_report
from models_admin.models import AuditEvent, ModelFile, ReceivedReport
from workers.schema import (
    INT64_MAX,
    SCHEMA_VERSION,
    FileEntry,
    HostFacts,
    InventoryReport,
    ModelDirState,
    path_bytes,
    wire_path,
)

from .conftest import sha, signed_report

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db


def inventory_body(host: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    body = InventoryReport(
        host=host,
        facts=HostFacts(hostname="h", model_dir="/m", model_dir_state=ModelDirState.OK),
        files=[],
    ).to_json()
    body["files"] = files
    return body


def entry(path: Any, size: Any = 1) -> dict[str, Any]:
    return {"path": path, "size": size, "mtime_ns": 1, "sha256": sha("x")}


def rejected_rows() -> list[ReceivedReport]:
    return list(ReceivedReport.objects.filter(status=ReceivedReport.Status.REJECTED))


def test_a_non_utf8_file_name_enters_the_inventory_readably_and_losslessly(make_host):
    make_host("ocr-1", {})
    wire = wire_path(b"old/caf\xe9_model.bin")
    report = InventoryReport(
        host="ocr-1",
        facts=HostFacts(hostname="h", model_dir="/m", model_dir_state=ModelDirState.OK),
        files=[FileEntry(path=wire, size=5, mtime_ns=1, sha256=sha("x"))],
    )
    assert ingest_report(signed_report(report)).status == "accepted"
    row = ModelFile.objects.get(snapshot__host__name="ocr-1")
    assert (row.path, row.name) == ("old/caf\\xe9_model.bin", "caf\\xe9_model.bin")
    assert path_bytes(row.path) == b"old/caf\xe9_model.bin"


@pytest.mark.parametrize(
    ("path", "size", "reason"),
    [
        ("../../etc/passwd", 1, "files.0.path: holds a '..' component"),
        ("models/", 1, "files.0.path: ends in '/'"),
        ("/etc/shadow", 1, "files.0.path: is absolute"),
        ("a\\x00.bin", 1, "files.0.path: holds a NUL byte"),
        ("ok.bin", INT64_MAX + 1, "files.0.size: Input should be less than or equal to"),
    ],
)
def test_a_signed_report_with_a_hostile_value_is_rejected_with_its_reason(make_host, path, size, reason):
    make_host("ocr-1", {"keep.bin": 1})
    result = ingest_report(signed_report(inventory_body("ocr-1", [entry(path, size)])))
    assert result.status == "rejected" and reason in result.reason
    [row] = rejected_rows()
    assert reason in row.reason
    assert AuditEvent.objects.filter(action=Action.REPORT_REJECTED, object_id=str(row.pk)).exists()
    # Nothing of it entered the inventory.
    assert not ModelFile.objects.filter(path=path).exists()


@pytest.mark.parametrize(
    "value",
    ["caf\udce9.bin", "nul\x00here", math.nan, math.inf, -math.inf, 2**64, {"k\ud800": "\udfff"}],
    ids=["surrogate", "nul", "nan", "inf", "-inf", "huge-int", "surrogate-key"],
)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
def test_storing_a_rejection_always_succeeds_and_leaves_a_trace(make_host, value, signed):
    make_host("ocr-1", {})
    body = inventory_body("ocr-1", [entry("a.bin")])
    if signed:
        body = signed_report(body)
    # The hostile value lands after signing, as a forger would put it: in the body and the signature.
    body["files"] = [entry(value)]
    body["junk"] = value
    if signed:
        body["signature"] = {**body["signature"], "signer": value}

    result = ingest_report(body)

    assert result.status == "rejected"
    [row] = rejected_rows()
    assert row.reason.startswith("security:")
    # The stored payload is plain JSON and shows what came, escaped rather than dropped.
    stored = json.dumps(row.payload, allow_nan=False, ensure_ascii=False)
    stored.encode("utf-8")
    assert "\x00" not in stored
    action = Action.SECURITY_REJECTED
    assert AuditEvent.objects.filter(action=action, object_id=str(row.pk)).count() == 1


def test_a_v1_report_is_refused_with_a_reason_naming_both_versions(make_host):
    make_host("ocr-1", {})
    body = {**inventory_body("ocr-1", [entry("a.bin")]), "schema_version": 1}
    result = ingest_report(signed_report(body))
    assert result.status == "rejected"
    assert f"unsupported schema_version 1 (this side speaks {SCHEMA_VERSION})" in result.reason
    assert rejected_rows()[0].reason == result.reason


hostile_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)
hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | hostile_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=12,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(["path", "size", "host", "kind", "report_id", "sent_at", "facts", "extra"]),
    value=hostile_values,
    sign_it=st.booleans(),
)
def test_ingest_never_raises_and_always_answers(make_host, field, value, sign_it):
    if not ReceivedReport.objects.exists() and not ModelFile.objects.exists():
        make_host("ocr-1", {})
    body = inventory_body("ocr-1", [entry("a.bin")])
    if field == "path":
        body["files"] = [entry(value)]
    elif field == "size":
        body["files"] = [entry("a.bin", value)]
    else:
        body[field] = value
    before = ReceivedReport.objects.count()
    try:
        message = signed_report(body) if sign_it else body
    except (TypeError, KeyError):
        message = body  # not signable: arrives unsigned
    result = ingest_report(message)
    assert result.status in {"accepted", "rejected", "duplicate"}
    if result.status == "rejected":
        assert ReceivedReport.objects.count() == before + 1
