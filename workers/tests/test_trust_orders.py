"""The agent obeys only orders the dashboard signed for it: everything else touches nothing.

Each refused order below names a real file by its real identity and asks for it to be
deleted at once, so an order that slipped through would change the model folder; the folder
is hashed whole (paths, bytes, times) before and after.
"""

from __future__ import annotations

import copy
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.config import AgentConfig, ConfigError
from workers.inventory import ScannedInventory
from workers.presence import startup_order
from workers.schema import (
    AgentTask,
    ErrorReport,
    FileIdentity,
    InventoryOrder,
    InventoryReport,
    Outcome,
    PruneMode,
    PruneOrder,
    PruneReport,
    utcnow,
)
from workers.signing.envelope import sign
from workers.signing.keys import public_key_text
from workers.tasks import Agent
from workers.tests.conftest import sign_order, write
from workers.trust import AgentTrust, self_signer

HOST = "ocr-trust-1"


def tree_state(root: Path) -> str:
    """One hash over every path, its bytes and its times under ``root``."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files) + dirs:
            path = Path(folder) / name
            st = path.lstat()
            digest.update(f"{path.relative_to(root)}|{st.st_mode}|{st.st_size}|{st.st_mtime_ns}".encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def config(models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey) -> AgentConfig:
    return AgentConfig(
        broker_url="memory://",
        host_name=HOST,
        models_dir=models_dir,
        state_dir=state_dir,
        dashboard_public_key=public_key_text(dashboard_key),
    )


@pytest.fixture
def agent(config: AgentConfig) -> Agent:
    return Agent(config)


@pytest.fixture
def sentinel(models_dir: Path) -> FileIdentity:
    write(models_dir / "en_ocr_v1.gguf", b"english")
    path = write(models_dir / "sub" / "old_fr_ocr_v1.bin", b"the sentinel model")
    st = path.stat()
    return FileIdentity(
        path="sub/old_fr_ocr_v1.bin",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(b"the sentinel model").hexdigest(),
    )


def delete_order(item: FileIdentity, host: str = HOST, **kw: Any) -> PruneOrder:
    return PruneOrder(host=host, request_id="req-1", mode=PruneMode.DELETE, items=[item], **kw)


def refused(agent: Agent, task: str, message: Any, models_dir: Path, reason: str) -> ErrorReport:
    before = tree_state(models_dir)
    [report] = agent.handle(task, message)
    assert isinstance(report, ErrorReport), report
    assert reason in report.reason
    assert tree_state(models_dir) == before
    return report


def test_a_genuine_order_deletes_the_sentinel(agent, models_dir, sentinel, dashboard_key):
    # The control: the same order, correctly signed, does delete the file.
    pruned, _inventory = agent.handle(AgentTask.PRUNE, sign_order(delete_order(sentinel), dashboard_key))
    assert isinstance(pruned, PruneReport) and pruned.outcomes[0].outcome is Outcome.DELETED
    assert not (models_dir / sentinel.path).exists()


def test_it_refuses_an_unsigned_order(agent, models_dir, sentinel):
    report = refused(agent, AgentTask.PRUNE, delete_order(sentinel).to_json(), models_dir, "unsigned")
    assert report.request_id is None  # an unauthenticated request id fails no request


def test_it_refuses_an_order_signed_by_another_key(agent, models_dir, sentinel):
    forged = sign_order(delete_order(sentinel), Ed25519PrivateKey.generate())
    refused(agent, AgentTask.PRUNE, forged, models_dir, "bad signature")


TAMPERINGS = {
    "host": lambda m: m.update(host="ocr-trust-2"),
    "request_id": lambda m: m.update(request_id="req-2"),
    "kind": lambda m: m.update(kind="restore"),
    "mode": lambda m: m.update(mode="quarantine"),
    "item path": lambda m: m["items"][0].update(path="en_ocr_v1.gguf"),
    "item sha256": lambda m: m["items"][0].update(sha256="0" * 64),
    "item added": lambda m: m["items"].append({**m["items"][0], "path": "en_ocr_v1.gguf"}),
    "sent_at": lambda m: m.update(sent_at=utcnow().isoformat()),
    "expires_at": lambda m: m.update(expires_at=(utcnow() + timedelta(days=30)).isoformat()),
    "extra field": lambda m: m.update(note="x"),
    "signer": lambda m: m["signature"].update(signer="dashboard2"),
    "purpose": lambda m: m["signature"].update(purpose=AgentTask.RESTORE.value),
    "nonce": lambda m: m["signature"].update(nonce="0" * 32),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_it_refuses_an_order_changed_after_signing(agent, models_dir, sentinel, dashboard_key, field):
    message = copy.deepcopy(sign_order(delete_order(sentinel), dashboard_key))
    TAMPERINGS[field](message)
    refused(agent, AgentTask.PRUNE, message, models_dir, "bad signature")


def test_it_refuses_another_hosts_order(agent, models_dir, sentinel, dashboard_key):
    message = sign_order(delete_order(sentinel, host="ocr-trust-2"), dashboard_key)
    refused(agent, AgentTask.PRUNE, message, models_dir, "reached 'ocr-trust-1'")


def test_it_refuses_an_order_delivered_to_another_task(agent, models_dir, sentinel, dashboard_key):
    message = sign_order(delete_order(sentinel), dashboard_key)
    refused(agent, AgentTask.RESTORE, message, models_dir, "signed for")


def test_it_refuses_an_expired_order(agent, models_dir, sentinel, dashboard_key):
    message = sign_order(delete_order(sentinel, expires_at=utcnow() - timedelta(hours=1)), dashboard_key)
    report = refused(agent, AgentTask.PRUNE, message, models_dir, "expired")
    # Authentic but late: the dashboard may fail its request.
    assert report.request_id == "req-1"


def test_it_refuses_an_order_without_expiry(agent, models_dir, sentinel, dashboard_key):
    body = delete_order(sentinel).to_json()
    message = sign(body, dashboard_key, signer="dashboard", purpose=AgentTask.PRUNE)
    refused(agent, AgentTask.PRUNE, message, models_dir, "expires_at is missing")


def test_it_refuses_a_replayed_order(agent, models_dir, sentinel, dashboard_key):
    write(models_dir / "old_de.bin", b"german")
    st = (models_dir / "old_de.bin").stat()
    other = FileIdentity(
        path="old_de.bin",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(b"german").hexdigest(),
    )
    message = sign_order(delete_order(other), dashboard_key)
    agent.handle(AgentTask.PRUNE, message)
    assert not (models_dir / "old_de.bin").exists()
    report = refused(agent, AgentTask.PRUNE, message, models_dir, "replayed")
    assert report.request_id is None


def test_a_redelivered_order_whose_run_never_finished_carries_on(agent, models_dir, dashboard_key):
    """The broker hands back the order of a worker that died mid-run: not a replay."""
    write(models_dir / "old_de.bin", b"german")
    st = (models_dir / "old_de.bin").stat()
    other = FileIdentity(
        path="old_de.bin",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(b"german").hexdigest(),
    )
    order = delete_order(other)
    message = sign_order(order, dashboard_key)
    agent.trust.check_order(AgentTask.PRUNE, message)  # the first delivery claimed the nonce ...
    agent.db.start_attempt(AgentTask.PRUNE, order.request_id)  # ... and its worker died here

    report, _inventory = agent.handle(AgentTask.PRUNE, message)

    assert [o.outcome for o in report.outcomes] == [Outcome.DELETED]
    assert not (models_dir / "old_de.bin").exists()
    assert agent.db.start_attempt(AgentTask.PRUNE, order.request_id)[1] is not None  # finished


def test_the_replay_guard_survives_a_restart(config, models_dir, sentinel, dashboard_key):
    message = sign_order(InventoryOrder(host=HOST, request_id="inv-1"), dashboard_key)
    [first] = Agent(config).handle(AgentTask.INVENTORY, message)
    assert isinstance(first, ScannedInventory)
    refused(Agent(config), AgentTask.INVENTORY, message, models_dir, "replayed")


def test_its_own_startup_inventory_is_obeyed(agent, config, sentinel):
    message = agent.trust.startup_order(startup_order(config))
    assert message["signature"]["signer"] == self_signer(HOST)
    [report] = agent.handle(AgentTask.INVENTORY, message)
    assert isinstance(report, ScannedInventory)
    assert {f.path for f in report.files} == {"en_ocr_v1.gguf", "sub/old_fr_ocr_v1.bin"}


def test_it_refuses_a_prune_signed_with_its_own_key(agent, models_dir, sentinel):
    # The agent's key signs its reports and its startup inventory, never a deletion.
    message = sign_order(delete_order(sentinel), agent.trust.private_key, signer=self_signer(HOST))
    refused(agent, AgentTask.PRUNE, message, models_dir, "bad signature")


def test_it_refuses_an_inventory_self_signed_by_another_agent(agent, models_dir, sentinel):
    message = sign_order(
        InventoryOrder(host=HOST, request_id="inv-x"), Ed25519PrivateKey.generate(), signer=self_signer(HOST)
    )
    refused(agent, AgentTask.INVENTORY, message, models_dir, "bad signature")


def test_the_worker_does_not_start_without_the_dashboard_key(models_dir, state_dir):
    config = AgentConfig(broker_url="memory://", host_name=HOST, models_dir=models_dir, state_dir=state_dir)
    with pytest.raises(ConfigError, match="OCRDASH_DASHBOARD_PUBLIC_KEY"):
        AgentTrust.load(config)
    bad = AgentConfig(
        broker_url="memory://",
        host_name=HOST,
        models_dir=models_dir,
        state_dir=state_dir,
        dashboard_public_key="ed25519:short",
    )
    with pytest.raises(ConfigError, match="OCRDASH_DASHBOARD_PUBLIC_KEY"):
        AgentTrust.load(bad)


def test_the_agent_key_is_private_and_kept(config, state_dir):
    first = AgentTrust.load(config)
    assert (state_dir / "agent.key").stat().st_mode & 0o777 == 0o600
    assert AgentTrust.load(config).public_key == first.public_key


def test_the_enrollment_token_is_not_in_the_configs_repr(config):
    from dataclasses import replace

    token = "ocrdash-enroll-" + "A" * 43
    assert token not in repr(replace(config, enrollment_token=token))


def test_reports_are_signed_and_carry_an_enrollment_while_a_token_is_set(config, state_dir):
    from dataclasses import replace

    from workers.schema import INGEST_TASK, FreeReport, HostFacts, ModelDirState
    from workers.signing.enrollment import enrollment_verifier, verify_enrollment_proof
    from workers.signing.envelope import verify

    token = "ocrdash-enroll-" + "B" * 43
    trust = AgentTrust.load(replace(config, enrollment_token=token))
    facts = HostFacts(hostname="h", model_dir="/m", model_dir_state=ModelDirState.OK)
    signed = trust.sign_report(InventoryReport(host=HOST, facts=facts, files=[]))
    body = verify(
        signed, trust.private_key.public_key(), expected_signer=HOST, expected_purpose=INGEST_TASK
    ).body
    assert token not in str(signed)
    assert body["enrollment"]["public_key"] == trust.public_key
    assert verify_enrollment_proof(
        enrollment_verifier(token),
        host=HOST,
        public_key_text=trust.public_key,
        report_id=body["report_id"],
        proof=body["enrollment"]["proof"],
    )
    free = trust.sign_report(FreeReport(host=HOST, freed=True))
    assert "enrollment" not in free and free["signature"]["signer"] == HOST
