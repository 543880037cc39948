"""Personas and a small fleet, shared by the dashboard's tests.

Personas: a viewer, an operator, two approvers (the two-person rule needs two), and an
outsider with no role. ``make_host`` builds a host with one snapshot and an enrolled key
straight in the database, for tests that are not about ingestion; ``signed_report`` signs a
report with that host's key, as its agent would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from pydantic import BaseModel

from models_admin.approvals import workflow
from models_admin.inventory import lifecycle, rollup, summary
from models_admin.models import DiskSample, Host, HostKey, ModelFile, PruneRequest, Snapshot
from workers.schema import (
    INGEST_TASK,
    HostFacts,
    InventoryReport,
    ItemOutcome,
    ModelDirState,
    Outcome,
    RestoreReport,
)
from workers.signing.envelope import sign
from workers.signing.keys import key_fingerprint, public_key_text

PASSWORD = "correct-horse-battery-staple"


def _user(username: str, *groups: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    for name in groups:
        # get_or_create: a transactional test's flush removes the groups the migration made.
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def viewer(db) -> User:
    return _user("vera", "viewer")


@pytest.fixture
def operator(db) -> User:
    return _user("otto", "viewer", "operator")


@pytest.fixture
def approver(db) -> User:
    return _user("alice", "viewer", "approver")


@pytest.fixture
def approver2(db) -> User:
    return _user("bob", "viewer", "operator", "approver")


@pytest.fixture
def outsider(db) -> User:
    return _user("eve")


@pytest.fixture
def client_for() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- keys and signed reports

# The private key of every host enrolled by make_host/enrolled_host, by host name: what the
# host's agent would hold in its state folder.
HOST_KEYS: dict[str, Ed25519PrivateKey] = {}


def enroll_key(host: Host, key: Ed25519PrivateKey | None = None) -> Ed25519PrivateKey:
    """Record a (new) active key for ``host`` straight in the database, as an enrollment would."""
    key = key or Ed25519PrivateKey.generate()
    HostKey.objects.create(host=host, public_key=public_key_text(key), fingerprint=key_fingerprint(key))
    HOST_KEYS[host.name] = key
    return key


def signed_report(
    report: BaseModel | dict[str, Any], key: Ed25519PrivateKey | None = None, **sign_kw: Any
) -> dict[str, Any]:
    """``report`` as its agent sends it: signed with the host's key (or ``key``)."""
    body = report.to_json() if isinstance(report, BaseModel) else dict(report)  # type: ignore[attr-defined]
    body.setdefault("sent_at", timezone.now().isoformat())
    key = key or HOST_KEYS[body["host"]]
    sign_kw.setdefault("signer", body["host"])
    sign_kw.setdefault("purpose", INGEST_TASK)
    return sign(body, key, **sign_kw)


def ingest(report: BaseModel | dict[str, Any], key: Ed25519PrivateKey | None = None):
    """Ingest ``report`` signed by its host's key; returns the IngestResult."""
    from models_admin.ingest import ingest_report

    return ingest_report(signed_report(report, key))


# ---------------------------------------------------------------- disk figures

GB = 1_000_000_000
DISK_TOTAL = 1_000 * GB


def disk_inventory(name: str, free: int, total: int = DISK_TOTAL) -> InventoryReport:
    """An inventory of no files that says only how full the disk is: what the forecast reads."""
    facts = HostFacts(
        hostname=name,
        model_dir="/srv/models",
        model_dir_state=ModelDirState.OK,
        disk_total=total,
        disk_free=free,
    )
    return InventoryReport(host=name, facts=facts, files=[])


def disk_history(host: Host, per_day: int, start: int = 500 * GB, days: int = 13) -> int:
    """``days`` past daily samples from ``start`` falling by ``per_day``; returns what today's
    inventory should say to continue the line."""
    today = timezone.localdate()
    DiskSample.objects.bulk_create(
        DiskSample(
            host=host,
            day=today - timedelta(days=i),
            disk_free=start - per_day * (days - i),
            disk_total=DISK_TOTAL,
        )
        for i in range(days, 0, -1)
    )
    return start - per_day * days


@pytest.fixture
def enrolled_host(make_host) -> Callable[..., tuple[Host, Ed25519PrivateKey]]:
    """enrolled_host("ocr-1", files) -> (host, its agent's private key)."""

    def make(name: str, files: dict[str, int] | None = None, status: str = Host.Status.ACTIVE):
        host = make_host(name, files, status=status)
        return host, HOST_KEYS[name]

    return make


@pytest.fixture
def enrollment_token(approver) -> Callable[..., str]:
    """enrollment_token(label="", host_name="", hours=None) -> a fresh token's text."""
    from models_admin.fleet import trust

    def make(**kw: Any) -> str:
        return trust.create_token(approver.username, **kw)[1]

    return make


@pytest.fixture
def make_host(db) -> Callable[..., Host]:
    """make_host("ocr-1", {"old_fr.bin": 100, "en.gguf": 200}, status="active")"""

    def make(name: str, files: dict[str, int] | None = None, status: str = Host.Status.ACTIVE) -> Host:
        files = files if files is not None else {"en_ocr_v1.gguf": 2_000, "old_fr_ocr_v1.bin": 1_000}
        now = timezone.now()
        host = Host.objects.create(
            name=name,
            status=status,
            last_seen=now,
            model_dir=f"/srv/{name}/models",
            model_dir_state=Host.DirState.OK,
            disk_total=10**12,
            disk_free=5 * 10**11,
            agent_version="0.1.0",
            aspose_version="26.10.0",
        )
        snapshot = Snapshot.objects.create(
            host=host,
            taken_at=now,
            last_seen_at=now,
            digest=sha(repr(sorted(files.items()))),
            file_count=len(files),
            total_bytes=sum(files.values()),
        )
        ModelFile.objects.bulk_create(
            ModelFile(
                snapshot=snapshot,
                path=path,
                name=path.rsplit("/", 1)[-1],
                size=size,
                mtime_ns=1_700_000_000_000_000_000,
                sha256=sha(path),
                known_to_aspose=path.endswith("Llama-3.2-3B-Instruct-Q4_K_M.gguf"),
            )
            for path, size in files.items()
        )
        host.current_snapshot = snapshot
        host.file_count, host.total_bytes = snapshot.file_count, snapshot.total_bytes
        host.save()
        rollup.record(snapshot, None)  # as ingest would: the reports' daily rollup
        lifecycle.snapshot_changed(None, snapshot.pk)  # and each model's sightings
        if status != Host.Status.RETIRED:  # as ingest would: the models pages' summary counts it
            summary.host_returned(host)
        enroll_key(host)
        return host

    return make


# ---------------------------------------------------------------- broker and requests


class HostQueue:
    """The real broker queue of one host (``ocrdash.host.<name>``), read as the agent would."""

    def __init__(self, name: str) -> None:
        from django.conf import settings
        from kombu import Connection

        from workers.schema import host_queue

        self.name = host_queue(name)
        self._conn = Connection(settings.CELERY_BROKER_URL)
        self._queue = self._conn.SimpleQueue(self.name)

    def get(self, timeout: float = 5) -> tuple[str, dict]:
        """(task name, order dict) of the next message; raises queue.Empty after timeout."""
        return self._decode(self._queue.get(timeout=timeout))

    def drain(self) -> list[tuple[str, dict]]:
        """Every message waiting now (no waiting: a publish has returned before we look)."""
        from queue import Empty

        got = []
        while True:
            try:
                got.append(self._decode(self._queue.get_nowait()))
            except Empty:
                return got

    @staticmethod
    def _decode(message) -> tuple[str, dict]:
        """(task, order body), after checking the order is signed by the dashboard for that task."""
        from models_admin.fleet import trust
        from workers.signing.envelope import DASHBOARD_SIGNER, verify

        message.ack()
        args, _kwargs, _embed = message.decode()
        task = message.headers["task"]
        verified = verify(
            args[0],
            trust.dashboard_key().public_key(),
            expected_signer=DASHBOARD_SIGNER,
            expected_purpose=task,
        )
        return task, verified.body

    def clear(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        self._queue.clear()
        self._queue.close()
        self._conn.release()


@pytest.fixture
def host_queue():
    """host_queue("ocr-1") -> HostQueue; every queue opened is emptied at the end."""
    opened: list[HostQueue] = []

    def make(name: str) -> HostQueue:
        queue = HostQueue(name)
        queue.clear()  # leftovers of an earlier, interrupted run
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        queue.close()


@pytest.fixture
def dispatched_request(operator, approver, host_queue, django_capture_on_commit_callbacks):
    """dispatched_request(host) -> a prune request of all the host's files, approved and sent."""
    from models_admin.approvals import workflow

    def make(host: Host, paths: list[str] | None = None):
        files = list(host.current_snapshot.files.all())
        if paths is not None:
            files = [f for f in files if f.path in paths]
        request = workflow.propose(host=host, files=files, reason="test", user=operator)
        queue = host_queue(host.name)
        with django_capture_on_commit_callbacks(execute=True):
            workflow.approve(request.id, approver)
        queue.drain()
        request.refresh_from_db()
        return request

    return make


@pytest.fixture(autouse=True)
def _fresh_heartbeat_samples():
    """Each test's heartbeats start as a new ingest process's: the rows of an earlier test are
    gone, its memo of having sent them must go too."""
    from models_admin.capacity import usage

    usage.forget_heartbeat_samples()
    yield
    usage.forget_heartbeat_samples()


@pytest.fixture(scope="session", autouse=True)
def _empty_notify_queue():
    """Workflow tests enqueue deliveries nobody consumes here: leave the broker as found."""
    yield
    from django.conf import settings
    from kombu import Connection

    from ocrdash.celery import NOTIFY_QUEUE

    with Connection(settings.CELERY_BROKER_URL) as conn:
        conn.SimpleQueue(NOTIFY_QUEUE).queue.delete()


@pytest.fixture
def restore_answer(approver, approver2, host_queue, django_capture_on_commit_callbacks):
    """restore_answer(prune, {path: outcome}) -> the restore of ``prune``, approved, sent and
    answered with those outcomes (``report_id`` new each time)."""

    def answer(prune: PruneRequest, outcomes: dict[str, Outcome], restore: PruneRequest | None = None):
        if restore is None:
            restore = workflow.propose_restore(prune_request=prune, user=approver, reason="needed")
            host_queue(prune.host.name)
            with django_capture_on_commit_callbacks(execute=True):
                workflow.approve(restore.id, approver2)
        report = RestoreReport(
            host=prune.host.name,
            request_id=restore.id.hex,
            prune_request_id=prune.id.hex,
            freed=True,
            outcomes=[ItemOutcome(path=p, outcome=o) for p, o in outcomes.items()],
        )
        assert ingest(report).status == "accepted"
        prune.refresh_from_db()
        return restore

    return answer
