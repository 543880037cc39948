"""Fixtures for the agent's tests: real folders, the real Aspose package, a real state db."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.aspose_backend import AsposeSession
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
