"""Orders that did not run to their end are answered item by item, in both stores, and a
restarted agent answers the order it had begun without waiting for anyone to ask again.

``Agent.handle`` on real folders and a real state database. A kill is a BaseException raised
mid-run (nothing of the agent catches it, as nothing survives a SIGKILL): the state database
is left as a killed process leaves it. The real SIGKILL of a running agent is in
``test_agent_restart.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.config import AgentConfig
from workers.inventory import ScannedInventory
from workers.presence import startup_order
from workers.prune import QUARANTINE_DIR, Pruner
from workers.schema import (
    AgentTask,
    FileIdentity,
    Outcome,
    PruneOrder,
    PruneReport,
    PurgeOrder,
    PurgeReport,
    RestoreOrder,
    RestoreReport,
    Store,
    parse_report,
)
from workers.signing.keys import public_key_text
from workers.state import StateDB
from workers.tasks import INTERRUPTED, Agent
from workers.tests.conftest import sign_order, write

HOST = "ocr-test-1"


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the agent catches it."""


@pytest.fixture
def ocr_dir(tmp_path: Path) -> Path:
    path = tmp_path / "aspose_data"
    path.mkdir()
    return path


@pytest.fixture
def config(models_dir: Path, state_dir: Path, ocr_dir: Path, dashboard_key: Ed25519PrivateKey) -> AgentConfig:
    return AgentConfig(
        broker_url="memory://",
        host_name=HOST,
        models_dir=models_dir,
        state_dir=state_dir,
        ocr_resources_dir=ocr_dir,
        dashboard_public_key=public_key_text(dashboard_key),
        max_attempts=3,
    )


@pytest.fixture
def signed(dashboard_key: Ed25519PrivateKey):
    return lambda order: sign_order(order, dashboard_key)


def ident(root: Path, rel: str, store: Store = Store.LLM) -> FileIdentity:
    st = os.stat(root / rel)
    digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return FileIdentity(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest, store=store)


def move_to_quarantine(root: Path, request_id: str, rel: str) -> None:
    """What the killed run did to this file before it could record it."""
    target = root / QUARANTINE_DIR / request_id / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    (root / rel).rename(target)


def ends(outcomes) -> dict[tuple[str, str], Outcome]:
    return {(o.store.value, o.path): o.outcome for o in outcomes}


def outbox(state_dir: Path) -> list:
    with StateDB(state_dir) as db:
        return [parse_report(body) for _rid, body in db.due_reports(everything=True)]


# ---------------------------------------------------------------- given up: both stores


def test_a_given_up_prune_accounts_for_each_item_in_its_own_store(
    config: AgentConfig, models_dir: Path, ocr_dir: Path, signed
) -> None:
    write(models_dir / "old.bin", b"llm")
    write(ocr_dir / "old_engine.OCR", b"ocr moved")
    write(ocr_dir / "kept.OCR", b"ocr kept")
    # The same relative path in both stores: each is accounted in its own.
    write(models_dir / "twin.bin", b"llm twin")
    write(ocr_dir / "twin.bin", b"ocr twin")
    items = [
        ident(models_dir, "old.bin"),
        ident(ocr_dir, "old_engine.OCR", Store.OCR),
        ident(ocr_dir, "kept.OCR", Store.OCR),
        ident(models_dir, "twin.bin"),
        ident(ocr_dir, "twin.bin", Store.OCR),
    ]
    agent = Agent(config)
    for _ in range(3):  # three starts that each died, the last after moving two OCR files
        agent.db.start_attempt(AgentTask.PRUNE, "p1")
    move_to_quarantine(ocr_dir, "p1", "old_engine.OCR")
    move_to_quarantine(ocr_dir, "p1", "twin.bin")

    report, inventory = agent.handle(
        AgentTask.PRUNE, signed(PruneOrder(host=HOST, request_id="p1", items=items))
    )

    assert isinstance(report, PruneReport)
    assert ends(report.outcomes) == {
        ("llm", "old.bin"): Outcome.ERROR,
        ("ocr", "old_engine.OCR"): Outcome.QUARANTINED,
        ("ocr", "kept.OCR"): Outcome.ERROR,
        ("llm", "twin.bin"): Outcome.ERROR,
        ("ocr", "twin.bin"): Outcome.QUARANTINED,
    }
    moved = {(o.store, o.path): o for o in report.outcomes}[(Store.OCR, "old_engine.OCR")]
    assert moved.bytes_reclaimed == len(b"ocr moved")
    assert moved.detail == f"{QUARANTINE_DIR}/p1/old_engine.OCR"
    assert isinstance(inventory, ScannedInventory)
    assert {(f.store.value, f.path) for f in inventory.files} == {
        ("llm", "old.bin"),
        ("llm", "twin.bin"),
        ("ocr", "kept.OCR"),
    }


def test_a_given_up_restore_accounts_for_both_stores(
    config: AgentConfig, models_dir: Path, ocr_dir: Path, signed
) -> None:
    # The prune p0 quarantined one file per store; the restore died after moving the OCR one back.
    write(models_dir / QUARANTINE_DIR / "p0" / "a.bin", b"a")
    write(ocr_dir / "b.OCR", b"b")
    agent = Agent(config)
    for _ in range(3):
        agent.db.start_attempt(AgentTask.RESTORE, "r1")
    order = RestoreOrder(
        host=HOST, request_id="r1", prune_request_id="p0", paths=["a.bin"], ocr_paths=["b.OCR"]
    )

    report, _inventory = agent.handle(AgentTask.RESTORE, signed(order))

    assert isinstance(report, RestoreReport)
    assert ends(report.outcomes) == {("llm", "a.bin"): Outcome.ERROR, ("ocr", "b.OCR"): Outcome.RESTORED}
    assert report.outcomes[0].detail.startswith("not restored: gave up after 3 attempts")


# ---------------------------------------------------------------- a restart mid-order


def start_again(config: AgentConfig) -> list:
    """A restarted agent: its startup inventory, as the presence step orders it at connect."""
    agent = Agent(config)
    try:
        return agent.handle(AgentTask.INVENTORY, agent.trust.startup_order(startup_order(config)))
    finally:
        agent.close()


def test_a_restarted_agent_answers_the_prune_it_had_begun_then_its_inventory(
    config: AgentConfig, models_dir: Path, ocr_dir: Path, signed, monkeypatch
) -> None:
    for name in ("a.bin", "b.bin", "c.bin"):
        write(models_dir / name, name.encode())
    write(ocr_dir / "d.OCR", b"d")
    items = [ident(models_dir, n) for n in ("a.bin", "b.bin", "c.bin")] + [ident(ocr_dir, "d.OCR", Store.OCR)]
    order = PruneOrder(host=HOST, request_id="p1", items=items)
    real_one = Pruner._one

    def killed_at_c(self, root_fd, request_id, item, mode):
        if item.path == "c.bin":
            raise Killed()
        return real_one(self, root_fd, request_id, item, mode)

    monkeypatch.setattr(Pruner, "_one", killed_at_c)
    with pytest.raises(Killed):
        Agent(config).handle(AgentTask.PRUNE, signed(order))
    monkeypatch.undo()
    assert outbox(config.state_dir) == []  # nothing was said: the run died

    [inventory] = start_again(config)

    assert isinstance(inventory, ScannedInventory) and inventory.request_id.startswith("startup-")
    prune, queued_inventory = outbox(config.state_dir)
    assert queued_inventory.report_id == inventory.report_id  # the inventory goes after the answer
    assert isinstance(prune, PruneReport) and prune.request_id == "p1"
    assert ends(prune.outcomes) == {
        ("llm", "a.bin"): Outcome.QUARANTINED,
        ("llm", "b.bin"): Outcome.QUARANTINED,
        ("llm", "c.bin"): Outcome.ERROR,
        ("ocr", "d.OCR"): Outcome.ERROR,  # its store's turn never came
    }
    assert prune.outcomes[2].detail == f"not done: {INTERRUPTED}"
    assert (models_dir / "c.bin").exists() and (ocr_dir / "d.OCR").exists()  # nothing moved
    assert {f.path for f in inventory.files} == {"c.bin", "d.OCR"}

    # Answered once: the next start says nothing more, and the dashboard's re-send of the
    # order (signed afresh) gets the very same report.
    start_again(config)
    assert [r.kind for r in outbox(config.state_dir)] == ["prune", "inventory", "inventory"]
    agent = Agent(config)
    assert agent.handle(AgentTask.PRUNE, signed(order))[0] == prune


def test_a_restarted_agent_answers_the_restore_it_had_begun(
    config: AgentConfig, models_dir: Path, signed, monkeypatch
) -> None:
    from workers import prune as prune_module

    write(models_dir / QUARANTINE_DIR / "p0" / "a.bin", b"a")
    write(models_dir / QUARANTINE_DIR / "p0" / "b.bin", b"b")
    real_restore_one = prune_module._restore_one

    def killed_at_b(root_fd, prune_request_id, path):
        if path == "b.bin":
            raise Killed()
        return real_restore_one(root_fd, prune_request_id, path)

    monkeypatch.setattr(prune_module, "_restore_one", killed_at_b)
    with pytest.raises(Killed):
        Agent(config).handle(
            AgentTask.RESTORE, signed(RestoreOrder(host=HOST, request_id="r1", prune_request_id="p0"))
        )
    monkeypatch.undo()

    start_again(config)

    restore = next(r for r in outbox(config.state_dir) if r.kind == "restore")
    assert isinstance(restore, RestoreReport) and restore.prune_request_id == "p0"
    assert ends(restore.outcomes) == {("llm", "a.bin"): Outcome.RESTORED, ("llm", "b.bin"): Outcome.ERROR}
    assert (models_dir / QUARANTINE_DIR / "p0" / "b.bin").exists()


def test_a_restarted_agent_answers_the_purge_it_had_begun_what_went_and_what_is_still_there(
    config: AgentConfig, models_dir: Path, ocr_dir: Path, signed, monkeypatch
) -> None:
    """Killed inside rmtree of the third folder: the first two went (bytes as the journal saw
    them before rmtree), the third is still there in part, the fourth was never reached; the
    OCR store's folder of the first request, its turn never came, is still there too."""
    for rid in ("p1", "p2", "p3", "p4"):
        for name in ("a.bin", "b.bin"):
            write(models_dir / QUARANTINE_DIR / rid / name, f"{rid} {name}".encode())
    write(ocr_dir / QUARANTINE_DIR / "p1" / "c.OCR", b"ocr of p1")
    order = PurgeOrder(
        host=HOST, request_id="g1", retention_days=0, prune_request_ids=["p1", "p2", "p3", "p4"]
    )
    real_rmtree = shutil.rmtree

    def killed_in_p3(path, *args, **kwargs):
        if path == "p3":
            os.unlink("p3/a.bin", dir_fd=kwargs["dir_fd"])  # rmtree's first step, then the kill
            raise Killed()
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed_in_p3)
    with pytest.raises(Killed):
        Agent(config).handle(AgentTask.PURGE, signed(order))
    monkeypatch.undo()
    assert outbox(config.state_dir) == []

    start_again(config)

    purge, _inventory = outbox(config.state_dir)
    assert isinstance(purge, PurgeReport) and purge.request_id == "g1"
    assert purge.detail == INTERRUPTED
    assert purge.purged_requests == ["p1", "p2"]
    assert {p.request_id: (p.bytes_purged, p.files) for p in purge.purged} == {
        "p1": (len(b"p1 a.bin") * 2, 2),
        "p2": (len(b"p2 a.bin") * 2, 2),
    }
    assert purge.bytes_purged == 4 * len(b"p1 a.bin")
    assert {(k.request_id, k.store.value, k.bytes_left, k.files_left) for k in purge.kept} == {
        ("p3", "llm", len(b"p3 b.bin"), 1),
        ("p4", "llm", 2 * len(b"p4 a.bin"), 2),
        ("p1", "ocr", len(b"ocr of p1"), 1),
    }
    assert (models_dir / QUARANTINE_DIR / "p4" / "a.bin").exists()  # nothing more was deleted
    assert (ocr_dir / QUARANTINE_DIR / "p1" / "c.OCR").exists()
    # Answered once: a re-send of the order gets the same report.
    assert Agent(config).handle(AgentTask.PURGE, signed(order))[0] == purge


def test_a_purge_that_fails_says_what_it_purged_and_what_is_still_there(
    config: AgentConfig, models_dir: Path, signed, monkeypatch
) -> None:
    for rid in ("p1", "p2"):
        write(models_dir / QUARANTINE_DIR / rid / "a.bin", rid.encode())
    real_rmtree = shutil.rmtree

    def refused_at_p2(path, *args, **kwargs):
        if path == "p2":
            raise PermissionError(13, "Permission denied", "p2")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", refused_at_p2)
    order = PurgeOrder(host=HOST, request_id="g2", retention_days=0, prune_request_ids=["p1", "p2"])
    purge, *_ = Agent(config).handle(AgentTask.PURGE, signed(order))

    assert isinstance(purge, PurgeReport)
    assert purge.purged_requests == ["p1"] and purge.bytes_purged == 2
    assert [(k.request_id, k.bytes_left) for k in purge.kept] == [("p2", 2)]
    assert "Permission denied" in purge.detail


def test_the_begun_order_of_another_host_sharing_the_state_folder_is_left_alone(
    config: AgentConfig, models_dir: Path, signed
) -> None:
    write(models_dir / "a.bin", b"a")
    with StateDB(config.state_dir) as db:  # another host's agent, its prune running now
        order = PruneOrder(host="ocr-test-2", request_id="p9", items=[ident(models_dir, "a.bin")])
        db.start_attempt(AgentTask.PRUNE, "p9", order=order.to_json())

    start_again(config)

    assert [r.kind for r in outbox(config.state_dir)] == ["inventory"]
    with StateDB(config.state_dir) as db:
        assert db.run_unfinished(AgentTask.PRUNE, "p9")


def test_a_state_database_of_the_previous_version_gains_the_journal(state_dir: Path) -> None:
    """An agent upgraded in place keeps its state and journals from then on."""
    old = sqlite3.connect(state_dir / "agent.sqlite3")
    old.executescript(
        "CREATE TABLE runs (task TEXT NOT NULL, request_id TEXT NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0, reports TEXT, started_at REAL, finished_at REAL,"
        " PRIMARY KEY (task, request_id));"
        "INSERT INTO runs VALUES ('ocrdash.agent.prune', 'old', 1, NULL, 1.0, NULL);"
        "PRAGMA user_version=1;"
    )
    old.close()
    with StateDB(state_dir) as db:
        assert db.start_attempt(AgentTask.PRUNE, "new", order={"kind": "prune"}) == (1, None)
        # The run from before the upgrade has no journal: it is left to the broker and the dashboard.
        assert db.unfinished_runs([AgentTask.PRUNE.value]) == [
            (AgentTask.PRUNE.value, "new", {"kind": "prune"})
        ]
        assert db.start_attempt(AgentTask.PRUNE, "old")[0] == 2
