"""Fixtures for the agent's tests: real folders, the real Aspose package, a real state db."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from workers.aspose_backend import AsposeSession
from workers.schema import ORDER_TASKS, utcnow
from workers.signing.envelope import DASHBOARD_SIGNER, sign
from workers.state import StateDB

ASPOSE_MODEL = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def db(state_dir: Path) -> StateDB:
    return StateDB(state_dir)


@pytest.fixture
def session(models_dir: Path, state_dir: Path) -> Iterator[AsposeSession]:
    with AsposeSession(models_dir, state_dir) as s:
        yield s


def write(path: Path, data: bytes = b"model") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def dashboard_key() -> Ed25519PrivateKey:
    """The dashboard's signing key for one test (agents pin its public half)."""
    return Ed25519PrivateKey.generate()


def sign_order(
    order: BaseModel | dict[str, Any],
    key: Ed25519PrivateKey,
    *,
    task: str | None = None,
    signer: str = DASHBOARD_SIGNER,
) -> dict[str, Any]:
    """``order`` as the dashboard sends it: signed for its task, with times if it had none."""
    body = order.to_json() if isinstance(order, BaseModel) else dict(order)  # type: ignore[attr-defined]
    body.setdefault("sent_at", utcnow().isoformat())
    if body.get("expires_at") is None:
        body["expires_at"] = (utcnow() + timedelta(hours=1)).isoformat()
    purpose = task or ORDER_TASKS[body["kind"]]
    return sign(body, key, signer=signer, purpose=purpose)
