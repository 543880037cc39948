"""Agent.handle without a broker: what each order produces, and how bad or repeated orders end."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest

from workers.config import AgentConfig
from workers.schema import (
    AgentTask,
    ErrorReport,
    FileIdentity,
    FreeOrder,
    FreeReport,
    InventoryReport,
    MaintainOrder,
    Outcome,
    PruneOrder,
    PruneReport,
    PurgeOrder,
    PurgeReport,
    RestoreOrder,
    RestoreReport,
    utcnow,
)
from workers.tasks import Agent
from workers.tests.conftest import write

HOST = "ocr-test-1"


@pytest.fixture
def agent(models_dir: Path, state_dir: Path) -> Agent:
    return Agent(
        AgentConfig(broker_url="memory://", host_name=HOST, models_dir=models_dir, state_dir=state_dir)
    )


def ident(root: Path, rel: str) -> FileIdentity:
    st = os.stat(root / rel)
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return FileIdentity(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest)


def test_maintain_lists_prunes_frees_and_lists_again(agent: Agent, models_dir: Path) -> None:
    write(models_dir / "en_ocr_v1.gguf", b"en")
    write(models_dir / "old_fr_ocr_v1.bin", b"fr")
    order = MaintainOrder(host=HOST, request_id="m1", items=[ident(models_dir, "old_fr_ocr_v1.bin")])
    before, pruned, after = agent.handle(AgentTask.MAINTAIN, order.to_json())
    assert isinstance(before, InventoryReport) and isinstance(after, InventoryReport)
    assert {f.path for f in before.files} == {"en_ocr_v1.gguf", "old_fr_ocr_v1.bin"}
    assert isinstance(pruned, PruneReport) and pruned.freed
    assert [o.outcome for o in pruned.outcomes] == [Outcome.QUARANTINED]
    assert {f.path for f in after.files} == {"en_ocr_v1.gguf"}
    assert all(r.request_id == "m1" for r in (before, pruned, after))


def test_redelivered_order_gets_the_same_reports(agent: Agent, models_dir: Path) -> None:
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")]).to_json()
    first = agent.handle(AgentTask.PRUNE, order)
    again = agent.handle(AgentTask.PRUNE, order)
    assert again == first  # same report ids: the dashboard can drop the duplicate
    assert first[0].outcomes[0].outcome is Outcome.QUARANTINED


def test_prune_and_restore_are_followed_by_a_fresh_inventory(agent: Agent, models_dir: Path) -> None:
    write(models_dir / "old.bin", b"x")
    write(models_dir / "en.gguf", b"y")
    order = PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")])
    pruned, inventory = agent.handle(AgentTask.PRUNE, order.to_json())
    assert isinstance(pruned, PruneReport) and isinstance(inventory, InventoryReport)
    assert [f.path for f in inventory.files] == ["en.gguf"]
    restore = RestoreOrder(host=HOST, request_id="r1", prune_request_id="p1")
    restored, inventory = agent.handle(AgentTask.RESTORE, restore.to_json())
    assert isinstance(restored, RestoreReport)
    assert sorted(f.path for f in inventory.files) == ["en.gguf", "old.bin"]


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("not a dict", "malformed"),
        ({"schema_version": 99, "host": HOST, "request_id": "x", "kind": "free"}, "schema_version"),
        ({"schema_version": 1, "host": HOST, "request_id": "x", "kind": "prune", "items": []}, "malformed"),
        (FreeOrder(host="someone-else", request_id="x").to_json(), "someone-else"),
        (FreeOrder(host=HOST, request_id="x").to_json() | {"kind": "inventory"}, "was sent to"),
    ],
)
def test_bad_orders_become_error_reports(agent: Agent, payload: object, reason: str) -> None:
    [report] = agent.handle(AgentTask.FREE, payload)
    assert isinstance(report, ErrorReport) and reason in report.reason


def test_expired_order_touches_nothing(agent: Agent, models_dir: Path) -> None:
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(
        host=HOST,
        request_id="p1",
        items=[ident(models_dir, "old.bin")],
        expires_at=utcnow() - timedelta(seconds=1),
    )
    [report] = agent.handle(AgentTask.PRUNE, order.to_json())
    assert isinstance(report, ErrorReport) and "expired" in report.reason
    assert (models_dir / "old.bin").exists()


def test_order_that_keeps_killing_the_worker_is_given_up(agent: Agent, models_dir: Path) -> None:
    write(models_dir / "old.bin", b"x")
    order = PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")])
    for _ in range(3):  # three starts that never finished (the worker died each time)
        agent.db.start_attempt(AgentTask.PRUNE, "p1")
    [report] = agent.handle(AgentTask.PRUNE, order.to_json())
    assert isinstance(report, ErrorReport) and report.reason == "gave up after 3 attempts"
    assert (models_dir / "old.bin").exists()
    assert agent.handle(AgentTask.PRUNE, order.to_json()) == [report]


def test_free_restore_purge(agent: Agent, models_dir: Path) -> None:
    [free] = agent.handle(AgentTask.FREE, FreeOrder(host=HOST, request_id="f1").to_json())
    assert isinstance(free, FreeReport) and free.freed
    write(models_dir / "old.bin", b"x")
    agent.handle(
        AgentTask.PRUNE,
        PruneOrder(host=HOST, request_id="p1", items=[ident(models_dir, "old.bin")]).to_json(),
    )
    restored, _ = agent.handle(
        AgentTask.RESTORE, RestoreOrder(host=HOST, request_id="r1", prune_request_id="p1").to_json()
    )
    assert isinstance(restored, RestoreReport) and restored.freed
    assert [o.outcome for o in restored.outcomes] == [Outcome.RESTORED]
    assert (models_dir / "old.bin").exists()
    [purged] = agent.handle(
        AgentTask.PURGE, PurgeOrder(host=HOST, request_id="g1", retention_days=0).to_json()
    )
    assert isinstance(purged, PurgeReport) and purged.purged_requests == ["p1"] and purged.freed


def test_missing_model_folder_is_reported_not_raised(tmp_path: Path, state_dir: Path) -> None:
    config = AgentConfig(
        broker_url="memory://", host_name=HOST, models_dir=tmp_path / "gone", state_dir=state_dir
    )
    [report] = Agent(config).handle(
        AgentTask.INVENTORY, {"schema_version": 1, "host": HOST, "request_id": "i", "kind": "inventory"}
    )
    assert isinstance(report, InventoryReport)
    assert report.facts.model_dir_state == "missing"
