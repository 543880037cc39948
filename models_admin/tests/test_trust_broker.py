"""A script holding only the broker's address can neither make a host delete a file nor
change any host's inventory in the dashboard.

Real processes on the real Redis broker: an enrolled, accepted agent and the ingest worker.
The attacker publishes forged and unsigned orders (naming a real file by its real identity,
asking for immediate deletion) on the host's queue, and forged and unsigned reports on the
ingest queue. Afterwards the model folder is byte-identical, the inventory in the database is
unchanged, every forgery is visible (agent errors, security audit events), and the agent still
obeys the dashboard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.fleet import hosts
from models_admin.models import AuditEvent, Host, HostKey, ModelFile, Snapshot
from workers.schema import (
    INGEST_TASK,
    AgentTask,
    FileEntry,
    FileIdentity,
    FreeReport,
    HostFacts,
    InventoryReport,
    ModelDirState,
    PruneMode,
    PruneOrder,
    PurgeOrder,
    RestoreOrder,
    host_queue,
    utcnow,
)
from workers.signing.envelope import DASHBOARD_SIGNER, sign
from workers.signing.keys import public_key_text
from workers.tests.test_trust_orders import tree_state

from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
A = AuditEvent.Action
SENTINEL = b"the sentinel model, never to be deleted by a stranger"


def inventory_state(name: str) -> tuple:
    host = Host.objects.get(name=name)
    return (
        host.status,
        host.current_snapshot_id,
        host.file_count,
        host.total_bytes,
        host.model_dir,
        list(Snapshot.objects.filter(host=host).order_by("id").values_list("id", "digest")),
        list(
            ModelFile.objects.filter(snapshot__host=host).order_by("id").values_list("path", "size", "sha256")
        ),
        list(HostKey.objects.filter(host=host).values_list("public_key", "revoked_at")),
    )


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    (models / "en_ocr_v1.gguf").write_bytes(b"english model")
    (models / "sub" / "old_fr_ocr_v1.bin").write_bytes(SENTINEL)
    with running_fleet(unique_host_name("trust"), models, tmp_path) as running:
        yield running


def test_a_script_with_only_the_broker_address_changes_nothing(fleet: Fleet, approver):
    name, models, wait_for = fleet.host, fleet.models_dir, fleet.wait_for
    host = wait_for(
        "the enrolled host's first inventory",
        lambda: Host.objects.filter(name=name, current_snapshot__isnull=False, keys__isnull=False).first(),
    )
    host = hosts.accept_host(host, approver)
    before_tree, before_db = tree_state(models), inventory_state(name)
    sentinel = FileIdentity(
        path="sub/old_fr_ocr_v1.bin",
        size=len(SENTINEL),
        mtime_ns=(models / "sub" / "old_fr_ocr_v1.bin").stat().st_mtime_ns,
        sha256=hashlib.sha256(SENTINEL).hexdigest(),
    )

    # ---- the attacker: a Celery client with the broker's address and nothing else
    attacker = Celery("attacker", broker=fleet.broker, set_as_current=False)
    attacker.conf.update(task_serializer="json")
    own_key = Ed25519PrivateKey.generate()
    later = (utcnow() + timedelta(hours=1)).isoformat()
    delete = PruneOrder(host=name, request_id="evil-1", mode=PruneMode.DELETE, items=[sentinel]).to_json()
    orders = [
        (AgentTask.PRUNE, delete),  # unsigned
        (
            AgentTask.PRUNE,
            sign({**delete, "expires_at": later}, own_key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE),
        ),
        (
            AgentTask.RESTORE,
            sign(
                RestoreOrder(host=name, request_id="evil-2", prune_request_id="x").to_json()
                | {"expires_at": later},
                own_key,
                signer=DASHBOARD_SIGNER,
                purpose=AgentTask.RESTORE,
            ),
        ),
        (AgentTask.PURGE, PurgeOrder(host=name, request_id="evil-3", retention_days=0).to_json()),
        (AgentTask.RESTORE, RestoreOrder(host=name, request_id="evil-4", prune_request_id="x").to_json()),
        (
            AgentTask.PRUNE,
            sign({**delete, "expires_at": later}, own_key, signer=f"self:{name}", purpose=AgentTask.PRUNE),
        ),
    ]
    for task, order in orders:
        attacker.send_task(task.value, args=[order], queue=host_queue(name))

    facts = HostFacts(hostname="evil", model_dir="/elsewhere", model_dir_state=ModelDirState.OK)
    fake = InventoryReport(
        host=name, facts=facts, files=[FileEntry(path="planted.gguf", size=1, mtime_ns=1, sha256="0" * 64)]
    ).to_json()
    own_public = public_key_text(own_key)
    reports = [
        fake,  # unsigned
        sign(fake, own_key, signer=name, purpose=INGEST_TASK),
        # A key rotation without a token: an enrollment with a made-up proof.
        sign(
            {**fake, "enrollment": {"public_key": own_public, "proof": "AAAA"}},
            own_key,
            signer=name,
            purpose=INGEST_TASK,
        ),
        sign(FreeReport(host=name, freed=True).to_json(), own_key, signer=name, purpose=INGEST_TASK),
    ]
    for report in reports:
        attacker.send_task(INGEST_TASK, args=[report], queue=fleet.ingest_queue)

    # Every forged order is answered by the agent with a (signed, accepted) error report, and
    # every forged report is refused as a security event.
    since = timezone.now() - timedelta(minutes=5)
    wait_for(
        "the agent's refusals",
        lambda: (
            AuditEvent.objects.filter(action=A.AGENT_ERROR, host=name, at__gte=since).count() >= len(orders)
        ),
    )
    wait_for(
        "the ingest's refusals",
        lambda: AuditEvent.objects.filter(action=A.SECURITY_REJECTED, host=name).count() >= len(reports),
    )
    refusals = AuditEvent.objects.filter(action=A.AGENT_ERROR, host=name)
    assert all("order refused" in e.details["reason"] for e in refusals)
    assert tree_state(models) == before_tree
    assert (models / "sub" / "old_fr_ocr_v1.bin").read_bytes() == SENTINEL
    assert inventory_state(name) == before_db

    # The agent is alive and still obeys the dashboard: a genuine inventory is answered and,
    # the files being unchanged, is recorded as seen again on the same snapshot.
    seen = Snapshot.objects.get(pk=before_db[1]).seen_count
    workflow.ask_inventory(Host.objects.get(name=name), approver)
    wait_for(
        "the genuine inventory",
        lambda: Snapshot.objects.get(pk=before_db[1]).seen_count > seen,
    )
    assert inventory_state(name) == before_db
