"""Personas and a small fleet, shared by the dashboard's tests.

Personas: a viewer, an operator, two approvers (the two-person rule needs two), and an
outsider with no role. ``make_host`` builds a host with one snapshot straight in the
database, for tests that are not about ingestion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from models_admin.models import Host, ModelFile, Snapshot

PASSWORD = "correct-horse-battery-staple"


def _user(username: str, *groups: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    for name in groups:
        user.groups.add(Group.objects.get(name=name))
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
        return host

    return make
