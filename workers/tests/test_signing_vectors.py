"""Known-answer vectors: fixed keys, fixed messages, the exact bytes signed and the signatures.

Ed25519 signatures are deterministic, so every value below is fixed. Any change to the wire
format (the canonical JSON, the header, the domain prefixes, the key derivation of
enrollment tokens, the text form of keys, the JSON a prune order is sent as) fails here,
which is what keeps an agent and a dashboard of different builds talking. Changing a vector
means every agent in the field has to be upgraded with the dashboard: bump the domain
(``ocrdash-message-v2``) and the schema version rather than edit a value.

The dashboard key is the one of RFC 8032's first Ed25519 test vector, so its public half is
checked against a value published outside this project.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.schema import INGEST_TASK, AgentTask, FileIdentity, PruneOrder, parse_order
from workers.signing.enrollment import (
    ENROLLMENT_TOKEN_PREFIX,
    enrollment_proof,
    enrollment_verifier,
    verify_enrollment_proof,
)
from workers.signing.envelope import DASHBOARD_SIGNER, sign, signed_bytes, unsigned, verify
from workers.signing.errors import SignatureError
from workers.signing.keys import key_fingerprint, load_public_key, public_key_text
from workers.signing.orders import verify_order
from workers.signing.replay import ReplayGuard
from workers.signing.reports import verify_report

# RFC 8032, section 7.1, TEST 1: secret key and public key.
DASHBOARD_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
DASHBOARD_PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
HOST_SEED = bytes(range(32))
TOKEN_RAW = bytes(range(32, 64))

NOW = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------- a prune order

ORDER_NONCE = "0123456789abcdef0123456789abcdef"
ORDER_JSON = {
    "schema_version": 2,
    "host": "ocr-1",
    "sent_at": "2031-05-04T12:00:00Z",
    "request_id": "a" * 32,
    "expires_at": "2031-05-04T13:00:00Z",
    "kind": "prune",
    "mode": "quarantine",
    "items": [
        {"path": "old_model.gguf", "size": 10, "mtime_ns": 1, "sha256": "0" * 64, "store": "llm"},
        {"path": "café/model.onnx", "size": 20, "mtime_ns": 2, "sha256": "1" * 64, "store": "llm"},
    ],
}
ORDER_SIGNED_BYTES = (
    b'ocrdash-message-v1\x00{"alg":"ed25519","message":{"expires_at":"2031-05-04T13:00:00Z",'
    b'"host":"ocr-1","items":[{"mtime_ns":1,"path":"old_model.gguf","sha256":"' + b"0" * 64 + b'",'
    b'"size":10,"store":"llm"},{"mtime_ns":2,"path":"caf\xc3\xa9/model.onnx","sha256":"' + b"1" * 64 + b'",'
    b'"size":20,"store":"llm"}],"kind":"prune","mode":"quarantine","request_id":"' + b"a" * 32 + b'",'
    b'"schema_version":2,"sent_at":"2031-05-04T12:00:00Z"},"nonce":"0123456789abcdef0123456789abcdef",'
    b'"purpose":"ocrdash.agent.prune","signer":"dashboard"}'
)
ORDER_SIGNATURE_HEX = (
    "3fbd0eb77feebcc7698a8c5b620798bb8663bb21df3b1fc61afd2b46ea2efa78"
    "6f4be5f796d274f2c0d2ed724addf591e3d5dc1a20e7e456a218986118fb930c"
)

# ---------------------------------------------------------------- a heartbeat report

REPORT_NONCE = "fedcba9876543210fedcba9876543210"
REPORT_JSON = {
    "schema_version": 2,
    "host": "ocr-1",
    "sent_at": "2031-05-04T12:00:00Z",
    "report_id": "b" * 32,
    "agent_version": "1.0",
    "request_id": None,
    "kind": "heartbeat",
    "interval_seconds": 30,
    "model_dir_state": "ok",
    "disk_total": None,
    "disk_free": None,
    "aspose_version": "",
    "backlog": None,
    "labels": {},
}
REPORT_SIGNED_BYTES = (
    b'ocrdash-message-v1\x00{"alg":"ed25519","message":{"agent_version":"1.0","aspose_version":"",'
    b'"backlog":null,"disk_free":null,"disk_total":null,"host":"ocr-1","interval_seconds":30,'
    b'"kind":"heartbeat","labels":{},"model_dir_state":"ok","report_id":"' + b"b" * 32 + b'",'
    b'"request_id":null,"schema_version":2,"sent_at":"2031-05-04T12:00:00Z"},'
    b'"nonce":"fedcba9876543210fedcba9876543210","purpose":"ocrdash.ingest.report","signer":"ocr-1"}'
)
REPORT_SIGNATURE_HEX = (
    "b7ab05319082de630c6a323ce6fa9a3a56ee263a26826692bc3704de2df03459"
    "0ca8fd53d6d57f70f3feefd5179680cc30f6f671137932703d9c59dc7babea0d"
)

# ---------------------------------------------------------------- keys and enrollment

HOST_PUBLIC_TEXT = "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
HOST_FINGERPRINT = "SHA256:5647:5aa7:5463:474c"
DASHBOARD_PUBLIC_TEXT = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
DASHBOARD_FINGERPRINT = "SHA256:21fe:31df:a154:a261"
TOKEN = "ocrdash-enroll-ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"
VERIFIER = "ed25519:xT0PauCL3VYkPmWyIpv4Of0UZ4LDoiw/6T2IBzt86Dk="
PROOF_INPUT = (
    b'ocrdash-enrollment-v1\x00{"host":"ocr-1","public_key":"' + HOST_PUBLIC_TEXT.encode() + b'",'
    b'"report_id":"' + b"b" * 32 + b'"}'
)
PROOF_HEX = (
    "650893007784bb2148ef308af9e036f44381f57fad8223ce632b8dd2c16f1d13"
    "984b7a638a924d1ba5ba18afe89c90fc2cd14ebd498ba7ac5e0ecd7a5eb57a03"
)


def dashboard_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(DASHBOARD_SEED)


def host_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(HOST_SEED)


def b64(hex_text: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_text)).decode("ascii")


def test_the_dashboard_key_is_rfc_8032_test_1() -> None:
    raw = (
        dashboard_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert raw.hex() == DASHBOARD_PUBLIC_HEX


def test_public_keys_have_a_fixed_text_and_fingerprint() -> None:
    assert public_key_text(dashboard_key()) == DASHBOARD_PUBLIC_TEXT
    assert key_fingerprint(dashboard_key()) == DASHBOARD_FINGERPRINT
    assert public_key_text(host_key()) == HOST_PUBLIC_TEXT
    assert key_fingerprint(HOST_PUBLIC_TEXT) == HOST_FINGERPRINT
    assert public_key_text(load_public_key(HOST_PUBLIC_TEXT)) == HOST_PUBLIC_TEXT


def test_the_schema_sends_a_prune_order_as_this_json() -> None:
    order = PruneOrder(
        host="ocr-1",
        request_id="a" * 32,
        sent_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        items=[
            FileIdentity(path="old_model.gguf", size=10, mtime_ns=1, sha256="0" * 64),
            FileIdentity(path="café/model.onnx", size=20, mtime_ns=2, sha256="1" * 64),
        ],
    )
    assert order.to_json() == ORDER_JSON
    assert parse_order(ORDER_JSON) == order


@pytest.mark.parametrize(
    ("message", "key", "signer", "purpose", "nonce", "expected_bytes", "signature_hex"),
    [
        (
            ORDER_JSON,
            dashboard_key,
            DASHBOARD_SIGNER,
            AgentTask.PRUNE,
            ORDER_NONCE,
            ORDER_SIGNED_BYTES,
            ORDER_SIGNATURE_HEX,
        ),
        (
            REPORT_JSON,
            host_key,
            "ocr-1",
            INGEST_TASK,
            REPORT_NONCE,
            REPORT_SIGNED_BYTES,
            REPORT_SIGNATURE_HEX,
        ),
    ],
    ids=["order", "report"],
)
def test_a_message_signs_to_the_known_bytes_and_signature(
    message, key, signer, purpose, nonce, expected_bytes, signature_hex
) -> None:
    assert signed_bytes(message, signer=signer, purpose=str(purpose), nonce=nonce) == expected_bytes
    signed = sign(message, key(), signer=signer, purpose=purpose, nonce=nonce)
    assert signed["signature"] == {
        "alg": "ed25519",
        "signer": signer,
        "purpose": str(purpose),
        "nonce": nonce,
        "value": b64(signature_hex),
    }
    assert unsigned(signed) == message
    # The signature is plain Ed25519 over exactly those bytes: another implementation that
    # builds them the same way checks it with any Ed25519 library.
    key().public_key().verify(bytes.fromhex(signature_hex), expected_bytes)


def test_the_known_order_is_obeyed_once_as_it_arrives_over_json(tmp_path) -> None:
    wire = json.dumps(
        {
            **ORDER_JSON,
            "signature": _signature(DASHBOARD_SIGNER, AgentTask.PRUNE, ORDER_NONCE, ORDER_SIGNATURE_HEX),
        }
    )
    body = verify_order(
        json.loads(wire),
        load_public_key(DASHBOARD_PUBLIC_TEXT),
        host="ocr-1",
        task=AgentTask.PRUNE,
        guard=ReplayGuard(tmp_path),
        now=NOW,
    )
    assert body == ORDER_JSON


def test_the_known_report_is_taken_as_it_arrives_over_json() -> None:
    wire = json.dumps(
        {**REPORT_JSON, "signature": _signature("ocr-1", INGEST_TASK, REPORT_NONCE, REPORT_SIGNATURE_HEX)}
    )
    verified = verify_report(json.loads(wire), load_public_key(HOST_PUBLIC_TEXT), host="ocr-1", now=NOW)
    assert (verified.body, verified.nonce) == (REPORT_JSON, REPORT_NONCE)


def test_one_changed_bit_of_the_known_signature_is_refused() -> None:
    value = bytearray.fromhex(ORDER_SIGNATURE_HEX)
    value[0] ^= 1
    message = {
        **ORDER_JSON,
        "signature": _signature(DASHBOARD_SIGNER, AgentTask.PRUNE, ORDER_NONCE, value.hex()),
    }
    with pytest.raises(SignatureError, match=r"^bad signature$"):
        verify(
            message,
            dashboard_key().public_key(),
            expected_signer=DASHBOARD_SIGNER,
            expected_purpose=AgentTask.PRUNE,
        )


def test_an_enrollment_token_derives_the_known_verifier_and_proof() -> None:
    assert ENROLLMENT_TOKEN_PREFIX + base64.urlsafe_b64encode(TOKEN_RAW).decode().rstrip("=") == TOKEN
    assert enrollment_verifier(TOKEN) == VERIFIER
    proof = enrollment_proof(TOKEN, host="ocr-1", public_key_text=HOST_PUBLIC_TEXT, report_id="b" * 32)
    assert proof == b64(PROOF_HEX)
    load_public_key(VERIFIER).verify(bytes.fromhex(PROOF_HEX), PROOF_INPUT)
    assert verify_enrollment_proof(
        VERIFIER, host="ocr-1", public_key_text=HOST_PUBLIC_TEXT, report_id="b" * 32, proof=proof
    )


def _signature(signer: str, purpose: str, nonce: str, signature_hex: str) -> dict[str, str]:
    return {
        "alg": "ed25519",
        "signer": signer,
        "purpose": str(purpose),
        "nonce": nonce,
        "value": b64(signature_hex),
    }
