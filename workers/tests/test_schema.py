"""Schema v2: byte file names cross losslessly, hostile strings are refused with a reason.

The fuzz tests hold the schema and ``verify()`` to their promise for any JSON a sender can
produce: a SchemaError/SignatureError with a reason, never another exception.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workers.schema import (
    INGEST_TASK,
    INT64_MAX,
    SCHEMA_VERSION,
    FileEntry,
    FileIdentity,
    HostFacts,
    InventoryReport,
    KeptQuarantine,
    ModelDirState,
    PurgedRequest,
    PurgeReport,
    SchemaError,
    Store,
    fs_path,
    parse_order,
    parse_report,
    path_bytes,
    wire_path,
)
from workers.signing.envelope import sign, verify
from workers.signing.errors import SignatureError

SHA = hashlib.sha256(b"x").hexdigest()

# A file name component: any bytes but "/" and NUL, not "." or "..".
name_bytes = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")
)
path_of_bytes = st.lists(name_bytes, min_size=1, max_size=4).map(b"/".join)


def inventory(files: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    report = InventoryReport(
        host="ocr-1",
        facts=HostFacts(hostname="h", model_dir="/m", model_dir_state=ModelDirState.OK),
        files=[],
    ).to_json()
    report["files"] = files
    report.update(extra)
    return report


def entry(path: Any, **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": 1, "mtime_ns": 1, "sha256": SHA, **extra}


# ---------------------------------------------------------------- names are bytes


def test_a_latin1_name_has_a_readable_lossless_wire_form() -> None:
    wire = wire_path(b"caf\xe9_model.bin")
    assert wire == "caf\\xe9_model.bin"
    assert path_bytes(wire) == b"caf\xe9_model.bin"
    # The same name as os gives it for a str call (surrogateescape) has the same wire form.
    assert wire_path("caf\udce9_model.bin") == wire
    assert fs_path(wire) == "caf\udce9_model.bin"
    assert FileEntry(path=wire, size=1, mtime_ns=1, sha256=SHA).path == wire


def test_backslash_and_control_characters_are_escaped_and_utf8_is_not() -> None:
    assert wire_path("a\\b") == "a\\\\b"
    assert wire_path("line\nbreak") == "line\\x0abreak"
    assert wire_path("modèle/日本.bin") == "modèle/日本.bin"


@given(path_of_bytes)
def test_any_byte_path_round_trips_through_a_message(raw: bytes) -> None:
    wire = wire_path(raw)
    assert path_bytes(wire) == raw
    assert wire_path(fs_path(wire)) == wire
    # Through JSON as the broker carries it, and through the schema on the other side.
    body = json.loads(json.dumps(inventory([entry(wire)]), ensure_ascii=False))
    [parsed] = parse_report(body).files
    assert path_bytes(parsed.path) == raw
    json.dumps(wire).encode("utf-8")  # storable as text: no surrogate, no NUL
    assert "\x00" not in wire


@given(st.text(max_size=30))
def test_wire_form_is_injective(text: str) -> None:
    # One name has one wire form: anything that decodes is the canonical form of its bytes.
    try:
        raw = path_bytes(text)
    except ValueError:
        return
    assert wire_path(raw) == text


# ---------------------------------------------------------------- hostile strings


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("models/", "ends in '/'"),
        ("/etc/passwd", "absolute"),
        ("a//b", "normal form"),
        ("./a", "normal form"),
        ("a\x00b", "control character"),
        ("a\\x00b", "NUL"),
        ("caf\udce9.bin", "lone surrogate"),
        ("a\\q", "backslash"),
        ("\\x41", "canonical"),
    ],
)
def test_hostile_paths_are_refused_with_a_reason(path: str, reason: str) -> None:
    with pytest.raises(SchemaError, match=r"files\.0\.path") as exc:
        parse_report(inventory([entry(path)]))
    assert reason in str(exc.value)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("size", INT64_MAX + 1, "less than or equal to 9223372036854775807"),
        ("size", 2**70, "less than or equal"),
        ("size", math.nan, "finite"),
        ("mtime_ns", math.inf, "finite"),
        ("sha256", "\udc80", "lone surrogate"),
    ],
)
def test_hostile_numbers_and_strings_are_refused(field: str, value: Any, reason: str) -> None:
    with pytest.raises(SchemaError) as exc:
        parse_report(inventory([entry("a.bin", **{field: value})]))
    assert f"files.0.{field}" in str(exc.value) and reason in str(exc.value)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"agent_version": "1\x00"}, "agent_version: holds a NUL character"),
        ({"report_id": "r\ud800"}, "report_id: holds a lone surrogate"),
        ({"request_id": "\x00"}, "request_id: holds a NUL character"),
    ],
)
def test_nul_and_surrogates_in_any_text_field_are_refused(extra: dict[str, Any], reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        parse_report(inventory([], **extra))


def test_order_retention_must_be_finite() -> None:
    order = {"schema_version": SCHEMA_VERSION, "host": "ocr-1", "request_id": "p", "kind": "purge"}
    for value in (math.nan, math.inf):
        with pytest.raises(SchemaError, match="retention_days: must be a finite number"):
            parse_order({**order, "retention_days": value})


def test_a_purge_report_says_what_it_left_in_quarantine_and_refuses_a_negative_size() -> None:
    report = PurgeReport(
        host="ocr-1",
        request_id="g1",
        purged_requests=["p1"],
        bytes_purged=5,
        purged=[PurgedRequest(request_id="p1", bytes_purged=5, files=1)],
        kept=[KeptQuarantine(request_id="p2", store=Store.OCR, bytes_left=7, files_left=2)],
        detail="stopped",
        freed=True,
    )
    assert parse_report(report.to_json()) == report
    body = report.to_json()
    assert parse_report({**body, "kept": []}).kept == []  # an older agent's report: nothing kept
    body["kept"] = [{"request_id": "p2", "store": "ocr", "bytes_left": -1, "files_left": 0}]
    with pytest.raises(SchemaError, match=r"kept\.0\.bytes_left"):
        parse_report(body)


def test_a_prune_order_cannot_name_a_path_outside_the_root() -> None:
    with pytest.raises(ValueError, match=r"holds a '\.\.' component"):
        FileIdentity(path="../x", size=1, mtime_ns=1, sha256=SHA)


# ---------------------------------------------------------------- versions


def test_a_v1_report_is_refused_with_the_reason() -> None:
    body = inventory([entry("a.bin")], schema_version=1)
    with pytest.raises(SchemaError, match=r"unsupported schema_version 1 \(this side speaks 2\)"):
        parse_report(body)


def test_a_v1_order_is_refused_with_the_reason() -> None:
    with pytest.raises(SchemaError, match="schema_version 1"):
        parse_order({"schema_version": 1, "host": "ocr-1", "request_id": "x", "kind": "free"})


# ---------------------------------------------------------------- fuzz

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=()), max_size=8), children, max_size=4
        )
    ),
    max_leaves=20,
)
# Mostly well-formed reports with one field replaced by something hostile: reaches the deep
# validators, not only the "not an object" exit.
field_names = st.sampled_from(
    ["host", "kind", "report_id", "request_id", "sent_at", "schema_version", "files", "facts", "x"]
)


@st.composite
def mutated_reports(draw: st.DrawFn) -> Any:
    base = inventory([entry(wire_path(draw(path_of_bytes)))])
    for _ in range(draw(st.integers(0, 3))):
        base[draw(field_names)] = draw(json_values)
    if draw(st.booleans()):
        base["files"] = [entry(draw(json_values))]
    return base


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, mutated_reports()))
def test_parse_report_only_ever_raises_schema_error(data: Any) -> None:
    try:
        parse_report(data)
    except SchemaError as exc:
        assert str(exc)
        str(exc).encode("utf-8")  # the reason itself is storable text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, mutated_reports()))
def test_parse_order_only_ever_raises_schema_error(data: Any) -> None:
    try:
        parse_order(data)
    except SchemaError as exc:
        str(exc).encode("utf-8")


KEY = Ed25519PrivateKey.generate()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_reports(), st.sampled_from(["none", "sig", "body", "signer"]), json_values)
def test_verify_never_raises_on_hostile_input(data: Any, where: str, junk: Any) -> None:
    message: Any = data
    if where != "none":
        try:
            message = sign(
                {k: v for k, v in data.items() if isinstance(v, str | int)},
                KEY,
                signer="ocr-1",
                purpose=INGEST_TASK,
            )
        except TypeError:
            message = dict(data)
        if where == "sig":
            message["signature"] = junk
        elif where == "body":
            message["host"] = junk
        else:
            message["signature"] = {**message.get("signature", {}), "signer": junk}
    try:
        verify(message, KEY.public_key(), expected_signer="ocr-1", expected_purpose=INGEST_TASK)
    except SignatureError as exc:
        str(exc).encode("utf-8")


@pytest.mark.parametrize(
    "value",
    ["\udce9", math.nan, math.inf, 10**5000, {"k\ud800": 1}],
    ids=["surrogate", "nan", "inf", "huge-int", "surrogate-key"],
)
def test_verify_rejects_unencodable_input_with_a_reason(value: Any) -> None:
    message = sign({"host": "ocr-1", "n": 1}, KEY, signer="ocr-1", purpose=INGEST_TASK)
    message["n"] = value
    with pytest.raises(SignatureError, match="not a JSON message"):
        verify(message, KEY.public_key(), expected_signer="ocr-1", expected_purpose=INGEST_TASK)


def test_verify_rejects_deep_nesting() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    message = sign({"host": "ocr-1"}, KEY, signer="ocr-1", purpose=INGEST_TASK)
    message["n"] = deep
    with pytest.raises(SignatureError, match="nested"):
        verify(message, KEY.public_key(), expected_signer="ocr-1", expected_purpose=INGEST_TASK)
