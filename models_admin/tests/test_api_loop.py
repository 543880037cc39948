"""The whole loop through the JSON API, set up only with the management commands.

Two users and one enrolled agent, made the way an install script makes them
(``create_user --token``, ``create_enrollment_token``), then nothing but HTTP calls with
``Authorization: Token ...`` against a live server, while a real agent worker and a real
ingest worker run on the real broker (see ``processes.py``) and a file really moves on disk.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from workers.prune import QUARANTINE_DIR

from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
OLD_MODEL = "old_fr_ocr_v1.bin"
OLD_BYTES = b"old french model, superseded by v2"


def command(*args: str) -> str:
    """Run a management command as a script would; returns what it printed on stdout."""
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


class Api:
    """One user's token against the live server: (status, JSON body) for every call."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.base}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def get(self, path: str) -> Any:
        code, body = self.call("GET", path)
        assert code == 200, (path, code, body)
        return body

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return self.call("POST", path, body or {})


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Users and a host set up only through the management commands, the host's agent running."""
    # The operator may approve too, so the refusal of his own request below is the two-person
    # rule and not a missing role.
    operator_token = command("create_user", "otto", "--role", "operator", "--role", "approver", "--token")
    approver_token = command("create_user", "alice", "--role", "approver", "--token")
    name = unique_host_name("api")
    enrollment = command("create_enrollment_token", "--host", name, "--label", "api loop test")
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v2.gguf").write_bytes(b"english model v2")
    (models / OLD_MODEL).write_bytes(OLD_BYTES)
    with running_fleet(name, models, tmp_path, token=enrollment) as fleet:
        yield {"fleet": fleet, "operator": operator_token, "approver": approver_token}


def test_two_users_and_an_agent_run_the_loop_through_the_api(live_server, installed) -> None:
    fleet: Fleet = installed["fleet"]
    name = fleet.host
    otto, alice = Api(live_server.url, installed["operator"]), Api(live_server.url, installed["approver"])

    # The agent announced itself: a pending host with its first inventory.
    def pending_with_snapshot() -> dict[str, Any] | None:
        hosts = alice.get("hosts/?status=pending")["results"]
        return next((h for h in hosts if h["name"] == name and h["current_snapshot"]), None)

    host = fleet.wait_for("the pending host in GET /api/hosts/", pending_with_snapshot)
    assert host["file_count"] == 2 and host["model_dir"] == str(fleet.models_dir)

    code, host = alice.post(f"hosts/{name}/accept/")
    assert (code, host["status"], host["accepted_by"]) == (200, "active", "alice"), host

    inventory = {f["path"]: f for f in otto.get(f"hosts/{name}/inventory/")["results"]}
    assert set(inventory) == {"en_ocr_v2.gguf", OLD_MODEL}
    assert inventory[OLD_MODEL]["size"] == len(OLD_BYTES)

    code, request = otto.post(f"hosts/{name}/prune-requests/", {"files": [OLD_MODEL], "reason": "v2 is live"})
    assert code == 201, request
    assert (request["state"], request["requested_by"]) == ("proposed", "otto")
    request_id = request["id"]

    # Two-person rule: otto may approve, but not his own request.
    code, refused = otto.post(f"prune-requests/{request_id}/approve/", {"comment": "mine"})
    assert code == 403 and "another approver" in refused["error"], refused
    assert alice.get(f"prune-requests/{request_id}/")["state"] == "proposed"

    code, approved = alice.post(f"prune-requests/{request_id}/approve/", {"comment": "ok"})
    assert code == 200 and approved["decided_by"] == "alice", approved

    def finished() -> dict[str, Any] | None:
        body = alice.get(f"prune-requests/{request_id}/")
        return body if body["state"] in ("completed", "partial", "failed") else None

    request = fleet.wait_for("the request to finish in GET /api/prune-requests/<id>/", finished)
    assert request["state"] == "completed", request
    [item] = request["items"]
    assert (item["path"], item["outcome"], item["bytes_reclaimed"]) == (
        OLD_MODEL,
        "quarantined",
        len(OLD_BYTES),
    )

    # On disk: gone from the model folder, byte for byte in the request's quarantine.
    assert not (fleet.models_dir / OLD_MODEL).exists()
    quarantined = fleet.models_dir / QUARANTINE_DIR / uuid.UUID(request_id).hex / OLD_MODEL
    assert quarantined.read_bytes() == OLD_BYTES
    assert (fleet.models_dir / "en_ocr_v2.gguf").exists()

    # The audit trail of the host names every step and who took it.
    trail = {(e["action"], e["actor"]) for e in alice.get(f"audit/?host={name}&limit=500")["results"]}
    agent = f"agent:{name}"
    for step in [
        ("host_registered", agent),
        ("host_enrolled", agent),
        ("report_ingested", agent),
        ("host_accepted", "alice"),
        ("request_proposed", "otto"),
        ("request_approved", "alice"),
        ("request_dispatched", "system"),
        ("item_outcome", agent),
        ("request_finished", agent),
    ]:
        assert step in trail, (step, sorted(trail))
    assert ("request_approved", "otto") not in trail
