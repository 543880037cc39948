"""Races on PostgreSQL, two real connections released together by a barrier (issue case 9).

Once: two concurrent proposals put one file into two open requests (9 of 10 tries), a
proposal made while the host was being retired survived the retirement, and approve during
retire deadlocked (a 500). Now every such transaction takes the host row first, and the
database's partial unique index holds "a file is in at most one open request".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction

from models_admin.approvals import workflow
from models_admin.fleet import hosts
from models_admin.models import Host, PruneItem, PruneRequest
from models_admin.security.roles import Role

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def role_groups(transactional_db) -> None:
    """The role groups a data migration made, gone after an earlier test's flush."""
    for role in Role:
        Group.objects.get_or_create(name=role.value)


State = PruneRequest.State
TRIES = 5


def race(*steps: Callable[[threading.Barrier], Any]) -> list[Any]:
    """Run each step on its own thread (its own connection); each returns a value or its exception."""
    barrier = threading.Barrier(len(steps))
    results: list[Any] = [None] * len(steps)

    def run(i: int, step: Callable[[threading.Barrier], Any]) -> None:
        try:
            results[i] = step(barrier)
        except Exception as exc:  # the result under test, compared by the caller
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(steps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer is stuck (deadlock?)"
    return results


def open_items(host: Host, path: str) -> int:
    return PruneItem.objects.filter(
        request__host=host, request__state__in=PruneRequest.OPEN_STATES, path=path
    ).count()


def old_file(host: Host):
    return host.current_snapshot.files.get(path="old_fr_ocr_v1.bin")


def test_two_proposals_of_one_file_leave_it_in_one_open_request(make_host, operator, approver):
    for attempt in range(TRIES):
        host = make_host(f"ocr-{attempt}")
        files = [old_file(host)]

        def propose(barrier: threading.Barrier, who=operator, host=host, files=files) -> PruneRequest:
            barrier.wait()
            return workflow.propose(host=host, files=files, reason="race", user=who)

        results = race(propose, lambda b: propose(b, approver))
        won = [r for r in results if isinstance(r, PruneRequest)]
        lost = [r for r in results if isinstance(r, workflow.WorkflowError)]
        assert len(won) == 1 and len(lost) == 1, (attempt, results)
        assert "already in an open request" in str(lost[0])
        assert open_items(host, "old_fr_ocr_v1.bin") == 1


def test_the_database_refuses_a_second_open_request_of_a_file(make_host, operator):
    """The index alone, without propose's check: two inserts racing, one refused."""
    for attempt in range(TRIES):
        host = make_host(f"ocr-{attempt}")
        files = [old_file(host)]

        def insert(barrier: threading.Barrier, host=host, files=files) -> PruneRequest:
            with transaction.atomic():
                barrier.wait()
                request = workflow._open_request(
                    files, host=host, kind=PruneRequest.Kind.PRUNE, reason="raw", requested_by=operator
                )
                time.sleep(0.2)  # hold the uncommitted insert while the other one arrives
                return request

        results = race(insert, insert)
        assert sorted(type(r).__name__ for r in results) == ["PruneRequest", "WorkflowError"], (
            attempt,
            results,
        )
        assert open_items(host, "old_fr_ocr_v1.bin") == 1


def test_a_finished_request_frees_its_files_for_a_new_proposal(make_host, operator, approver):
    host = make_host("ocr-1")
    first = workflow.propose(host=host, files=[old_file(host)], reason="one", user=operator)
    with pytest.raises(workflow.WorkflowError, match="already in an open request"):
        workflow.propose(host=host, files=[old_file(host)], reason="two", user=operator)
    workflow.reject(first.id, approver, "not now")
    second = workflow.propose(host=host, files=[old_file(host)], reason="two", user=operator)
    assert second.items.get().open_on_host_id == host.id
    assert first.items.get().open_on_host_id is None


def _retire_slowly(
    host: Host, approver, *, lock_then_wait: bool = False
) -> Callable[[threading.Barrier], Host]:
    """Retire ``host`` in a transaction that holds the host row while the other racer acts.

    By default the retirement is done (uncommitted) when the other racer starts; with
    ``lock_then_wait`` only the host row is held, and the retirement's request updates come
    after the other racer had time to lock what it locks.
    """

    def retire(barrier: threading.Barrier) -> Host:
        with transaction.atomic():
            Host.objects.select_for_update().get(pk=host.pk)
            if not lock_then_wait:
                hosts.retire_host(host, approver)
            barrier.wait()
            time.sleep(0.5)  # the other racer acts now
            return hosts.retire_host(host, approver)  # a no-op if already retired

    return retire


def test_a_proposal_during_retire_does_not_survive_it(make_host, operator, approver):
    for attempt in range(TRIES):
        host = make_host(f"ocr-{attempt}")
        files = [old_file(host)]

        def propose(barrier: threading.Barrier, host=host, files=files) -> PruneRequest:
            barrier.wait()
            return workflow.propose(host=host, files=files, reason="race", user=operator)

        retired, proposed = race(_retire_slowly(host, approver), propose)
        assert isinstance(retired, Host), retired
        assert isinstance(proposed, workflow.WorkflowError), (attempt, proposed)
        assert "retired" in str(proposed)
        assert not PruneRequest.objects.filter(host=host, state__in=PruneRequest.OPEN_STATES).exists()


def test_approve_during_retire_neither_deadlocks_nor_fails_with_a_database_error(
    make_host, operator, approver
):
    for attempt in range(TRIES):
        host = make_host(f"ocr-{attempt}")
        request = workflow.propose(host=host, files=[old_file(host)], reason="race", user=operator)

        def approve(barrier: threading.Barrier, request=request) -> PruneRequest:
            barrier.wait()
            return workflow.approve(request.id, approver, "ok")

        retired, approved = race(_retire_slowly(host, approver, lock_then_wait=True), approve)
        assert isinstance(retired, Host), retired
        assert not isinstance(approved, DatabaseError), (attempt, approved)
        # The retirement came first: the proposal expired, and approving it says so.
        assert isinstance(approved, workflow.WrongState), (attempt, approved)
        request.refresh_from_db()
        assert request.state == State.EXPIRED


def test_a_withdrawn_request_frees_its_file(make_host, operator):
    host = make_host("ocr-w")
    first = workflow.propose(host=host, files=[old_file(host)], reason="one", user=operator)
    workflow.withdraw(first.id, operator)
    second = workflow.propose(host=host, files=[old_file(host)], reason="again", user=operator)
    assert open_items(host, "old_fr_ocr_v1.bin") == 1 and second.items.get().open_on_host_id == host.id
