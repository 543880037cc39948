"""Progress of long work: rate-limited, best effort, and fed by the real walk and prune."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.inventory import ScannedInventory
from workers.progress import ProgressReporter, folder_bytes
from workers.schema import (
    AgentTask,
    InventoryOrder,
    ProgressReport,
    PruneOrder,
    parse_report,
)
from workers.tasks import Agent
from workers.tests.conftest import sign_order, write
from workers.tests.test_agent import HOST, config, ident


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_sends_every_interval_or_every_step_and_never_faster_than_the_gap() -> None:
    sent: list[ProgressReport] = []
    clock = Clock()
    reporter = ProgressReporter(HOST, sent.append, interval=2.0, step=0.05, min_gap=0.2, clock=clock)
    reporter.begin("r1", "hashing", total_bytes=1000)
    clock.now += 0.1
    reporter(400)  # 40 % but within the minimum gap
    assert sent == []
    clock.now += 0.2
    reporter(10)  # 41 %: moved by more than 5 % since the start
    assert [r.done_bytes for r in sent] == [410]
    clock.now += 0.5
    reporter(10)  # 1 % more, 0.5 s later: neither the step nor the interval
    assert len(sent) == 1
    clock.now += 2.0
    reporter(1)  # the interval passed
    assert [r.done_bytes for r in sent] == [410, 421]
    report = sent[-1]
    assert report.request_id == "r1" and report.phase == "hashing" and report.total_bytes == 1000
    # 42.1 % in 2.8 s: about 3.85 s left.
    assert report.eta_seconds is not None and 3.5 < report.eta_seconds < 4.2
    # It round-trips through the schema like any report.
    assert parse_report(report.to_json()) == report


def test_a_failing_send_never_stops_the_work() -> None:
    def broken(report: ProgressReport) -> None:
        raise ConnectionError("broker gone")

    clock = Clock()
    reporter = ProgressReporter(HOST, broken, interval=0, min_gap=0, clock=clock)
    reporter.begin("r1", "pruning", total_items=2)
    clock.now += 1
    reporter.item()
    assert reporter.sent == 0
    reporter.end()
    reporter.item()  # after the end: counted nowhere, sent nowhere


def test_folder_bytes_counts_regular_files_only_and_skips_the_quarantine(tmp_path: Path) -> None:
    write(tmp_path / "a.bin", b"x" * 10)
    write(tmp_path / "sub" / "b.bin", b"x" * 5)
    write(tmp_path / ".ocrdash-quarantine" / "old.bin", b"x" * 100)
    os.symlink(tmp_path / "a.bin", tmp_path / "link.bin")
    assert folder_bytes(tmp_path, ".ocrdash-quarantine") == 15


def test_a_first_inventory_and_a_prune_report_their_progress(
    models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    write(models_dir / "big.gguf", os.urandom(3 * 1024 * 1024))
    write(models_dir / "old_a.bin", b"a")
    write(models_dir / "old_b.bin", b"b")
    sent: list[ProgressReport] = []
    reporter = ProgressReporter(HOST, sent.append, interval=0, step=0, min_gap=0)
    agent = Agent(config(models_dir, state_dir, dashboard_key), progress=reporter)
    [inventory] = agent.handle(
        AgentTask.INVENTORY, sign_order(InventoryOrder(host=HOST, request_id="i1"), dashboard_key)
    )
    assert isinstance(inventory, ScannedInventory)
    hashing = [r for r in sent if r.request_id == "i1"]
    assert hashing and all(r.phase == "hashing" for r in hashing)
    total = sum(f.size for f in inventory.files)
    assert {r.total_bytes for r in hashing} == {total}
    assert [r.done_bytes for r in hashing] == sorted(r.done_bytes for r in hashing)  # it only moves on
    assert hashing[-1].done_bytes == total
    sent.clear()
    order = PruneOrder(
        host=HOST, request_id="p1", items=[ident(models_dir, "old_a.bin"), ident(models_dir, "old_b.bin")]
    )
    agent.handle(AgentTask.PRUNE, sign_order(order, dashboard_key))
    pruning = [r for r in sent if r.phase == "pruning"]
    assert [(r.done_items, r.total_items) for r in pruning] == [(1, 2), (2, 2)]
