"""Agent.handle without a broker: what each order produces, and how bad or repeated orders end."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.config import AgentConfig
from workers.inventory import ScannedInventory
from workers.schema import (
    AgentTask,
    ErrorReport,
    FileIdentity,
    FreeOrder,
    FreeReport,
    Outcome,
    PruneOrder,
    PruneReport,
    PurgeOrder,
    PurgeReport,
    RestoreOrder,
    RestoreReport,
    utcnow,
)
from workers.signing.freshness import DEFAULT_MAX_SKEW
from workers.signing.keys import public_key_text
from workers.tasks import Agent
from workers.tests.conftest import sign_order, write

HOST = "ocr-test-1"


def config(models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey) -> AgentConfig:
    return AgentConfig(
        broker_url="memory://",
        host_name=HOST,
        models_dir=models_dir,
        state_dir=state_dir,
        dashboard_public_key=public_key_text(dashboard_key),
    )


@pytest.fixture
def agent(models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey) -> Agent:
    return Agent(config(models_dir, state_dir, dashboard_key))


@pytest.fixture
def signed(dashboard_key: Ed25519PrivateKey):
    """signed(order) -> the order as the dashboard sends it (a fresh signature each call)."""
    return lambda order, **kw: sign_order(order, dashboard_key, **kw)


def ident(root: Path, rel: str) -> FileIdentity:
    st = os.stat(root / rel)
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return FileIdentity(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)


def test_a_resent_order_gets_the_same_reports(agent: Agent, models_dir: Path, signed) -> None:
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")])
    first = agent.handle(AgentTask.PRUNE, signed(order))
    # The dashboard re-sends an unanswered request under the same request id, signed afresh.
    again = agent.handle(AgentTask.PRUNE, signed(order))
    assert again == first  # same report ids: the dashboard can drop the duplicate
    assert first[0].outcomes[0].outcome is Outcome.QUARANTINED


def test_the_same_signed_message_twice_is_a_replay(agent: Agent, models_dir: Path, signed) -> None:
    write(models_dir / "old.bin", b"x")
    message = signed(PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")]))
    agent.handle(AgentTask.PRUNE, message)
    [report] = agent.handle(AgentTask.PRUNE, message)
    assert isinstance(report, ErrorReport) and "replayed" in report.reason
    # A replay names no request: it must not fail the dashboard's request for p1.
    assert report.request_id is None


def test_prune_and_restore_are_followed_by_a_fresh_inventory(agent: Agent, models_dir: Path, signed) -> None:
    write(models_dir / "old.bin", b"x")
    write(models_dir / "en.gguf", b"y")
    order = PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")])
    pruned, inventory = agent.handle(AgentTask.PRUNE, signed(order))
    assert isinstance(pruned, PruneReport) and isinstance(inventory, ScannedInventory)
    assert [f.path for f in inventory.files] == ["en.gguf"]
    restore = RestoreOrder(host=HOST, request_id="r1", prune_request_id="p1")
    restored, inventory = agent.handle(AgentTask.RESTORE, signed(restore))
    assert isinstance(restored, RestoreReport)
    assert sorted(f.path for f in inventory.files) == ["en.gguf", "old.bin"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"schema_version": 99, "host": HOST, "request_id": "x", "kind": "free"}, "schema_version"),
        ({"schema_version": 2, "host": HOST, "request_id": "x", "kind": "free", "items": []}, "malformed"),
        (FreeOrder(host="someone-else", request_id="x").to_json(), "someone-else"),
        (FreeOrder(host=HOST, request_id="x").to_json() | {"kind": "inventory"}, "signed for"),
    ],
)
def test_bad_signed_orders_become_error_reports(agent: Agent, signed, payload: dict, reason: str) -> None:
    # Signed by the dashboard for the task that receives them, and still wrong.
    [report] = agent.handle(AgentTask.FREE, signed(payload, task=AgentTask.FREE))
    assert isinstance(report, ErrorReport) and reason in report.reason


def test_a_message_that_is_not_an_object_is_refused(agent: Agent) -> None:
    [report] = agent.handle(AgentTask.FREE, "not a dict")
    assert isinstance(report, ErrorReport) and "refused" in report.reason


def test_expired_order_touches_nothing(agent: Agent, models_dir: Path, signed) -> None:
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(
        host=HOST,
        request_id="p1",
        items=[ident(models_dir, "old.bin")],
        expires_at=utcnow() - DEFAULT_MAX_SKEW - timedelta(seconds=1),
    )
    [report] = agent.handle(AgentTask.PRUNE, signed(order))
    assert isinstance(report, ErrorReport) and "expired" in report.reason
    assert (models_dir / "old.bin").exists()


def test_the_clock_skew_allowance_holds_for_expiry_as_for_sending(
    agent: Agent, models_dir: Path, signed
) -> None:
    # A dashboard clock a little ahead: the order expired a moment ago by our clock, within
    # the allowance that the signature check grants, so nothing refuses it later either.
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(
        host=HOST,
        request_id="p1",
        items=[ident(models_dir, "old.bin")],
        expires_at=utcnow() - timedelta(seconds=1),
    )
    report, _inventory = agent.handle(AgentTask.PRUNE, signed(order))
    assert isinstance(report, PruneReport) and [o.outcome for o in report.outcomes] == [Outcome.QUARANTINED]


def test_a_refused_delivery_does_not_burn_the_nonce_of_the_good_one(
    agent: Agent, models_dir: Path, signed
) -> None:
    message = signed(FreeOrder(host=HOST, request_id="f1"))
    [refused] = agent.handle(AgentTask.PRUNE, message)  # delivered to the wrong task
    assert isinstance(refused, ErrorReport) and "refused" in refused.reason
    [free] = agent.handle(AgentTask.FREE, message)  # the same signed message where it belongs
    assert isinstance(free, FreeReport)


def test_order_that_keeps_killing_the_worker_is_given_up_item_by_item(
    agent: Agent, models_dir: Path, signed
) -> None:
    write(models_dir / "old.bin", b"x")
    write(models_dir / "moved.bin", b"y")
    items = [ident(models_dir, "old.bin"), ident(models_dir, "moved.bin")]
    order = PruneOrder(host=HOST, request_id="p1", items=items)
    for _ in range(3):  # three starts that never finished (the worker died each time) ...
        agent.db.start_attempt(AgentTask.PRUNE, "p1")
    # ... the last one right after moving a file, before recording it.
    write(models_dir / ".ocrdash-quarantine" / "p1" / "moved.bin", b"y")
    (models_dir / "moved.bin").unlink()
    report, inventory = agent.handle(AgentTask.PRUNE, signed(order))
    assert isinstance(report, PruneReport)
    by_path = {o.path: o for o in report.outcomes}
    assert by_path["old.bin"].outcome is Outcome.ERROR
    assert by_path["old.bin"].detail == "not done: gave up after 3 attempts"
    assert by_path["moved.bin"].outcome is Outcome.QUARANTINED and by_path["moved.bin"].bytes_reclaimed == 1
    assert (models_dir / "old.bin").exists()
    assert isinstance(inventory, ScannedInventory) and [f.path for f in inventory.files] == ["old.bin"]
    assert agent.handle(AgentTask.PRUNE, signed(order)) == [report, inventory]


def test_a_prune_that_crashes_half_way_reports_each_item(
    agent: Agent, models_dir: Path, signed, monkeypatch
) -> None:
    from workers.prune import Pruner

    write(models_dir / "a.bin", b"a")
    write(models_dir / "b.bin", b"b")
    items = [ident(models_dir, "a.bin"), ident(models_dir, "b.bin")]
    real_one = Pruner._one

    def one_then_crash(self, root_fd, request_id, item, mode):
        if item.path == "b.bin":
            raise RuntimeError("disk went away")
        return real_one(self, root_fd, request_id, item, mode)

    monkeypatch.setattr(Pruner, "_one", one_then_crash)
    report, inventory = agent.handle(
        AgentTask.PRUNE, signed(PruneOrder(host=HOST, request_id="p2", items=items))
    )
    assert isinstance(report, PruneReport)
    assert [(o.path, o.outcome) for o in report.outcomes] == [
        ("a.bin", Outcome.QUARANTINED),
        ("b.bin", Outcome.ERROR),
    ]
    assert "disk went away" in report.outcomes[1].detail
    assert isinstance(inventory, ScannedInventory)


@pytest.mark.parametrize(
    "message",
    [
        {"kind": "prune", "request_id": "x\x00y"},
        {"schema_version": 2, "host": HOST, "request_id": "r", "kind": "free", "n": 2**70},
        {"signature": {"signer": "dashboard", "nonce": "\ud800", "value": "\udfff"}},
        {"signature": "x" * 10},
        ["not", "an", "object"],
        None,
        2**100,
    ],
)
def test_hostile_messages_end_as_a_refusal_never_an_exception(agent: Agent, message) -> None:
    [report] = agent.handle(AgentTask.PRUNE, message)
    assert isinstance(report, ErrorReport)


def test_hostile_signed_orders_end_as_a_refusal(agent: Agent, signed) -> None:
    for body in (
        {"kind": "free", "host": HOST, "request_id": "a\x00b", "schema_version": 2},
        {"kind": "free", "host": HOST, "request_id": "big", "schema_version": 2, "extra": 2**80},
        {"kind": "free", "host": HOST, "request_id": "\udc80", "schema_version": 2},
    ):
        try:
            message = signed(body)
        except Exception:  # the signer itself refuses to sign it: nothing to deliver
            continue
        [report] = agent.handle(AgentTask.FREE, message)
        assert isinstance(report, ErrorReport), body


def test_free_restore_purge(agent: Agent, models_dir: Path, signed) -> None:
    [free] = agent.handle(AgentTask.FREE, signed(FreeOrder(host=HOST, request_id="f1")))
    assert isinstance(free, FreeReport) and free.freed
    write(models_dir / "old.bin", b"x")
    agent.handle(
        AgentTask.PRUNE,
        signed(PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")])),
    )
    restored, _ = agent.handle(
        AgentTask.RESTORE, signed(RestoreOrder(host=HOST, request_id="r1", prune_request_id="p1"))
    )
    assert isinstance(restored, RestoreReport) and restored.freed
    assert [o.outcome for o in restored.outcomes] == [Outcome.RESTORED]
    assert (models_dir / "old.bin").exists()
    [purged] = agent.handle(AgentTask.PURGE, signed(PurgeOrder(host=HOST, request_id="g1", retention_days=0)))
    assert isinstance(purged, PurgeReport) and purged.purged_requests == ["p1"] and purged.freed


def test_missing_model_folder_is_reported_not_raised(
    tmp_path: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey, signed
) -> None:
    [report] = Agent(config(tmp_path / "gone", state_dir, dashboard_key)).handle(
        AgentTask.INVENTORY,
        signed({"schema_version": 2, "host": HOST, "request_id": "i", "kind": "inventory"}),
    )
    assert isinstance(report, ScannedInventory)
    assert report.facts.model_dir_state == "missing"
