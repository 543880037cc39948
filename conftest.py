"""Stop the run with a clear message when a server the tests need is not there.

The suite runs against real PostgreSQL and Redis; a missing server must not look like a pass
(or like a hundred unrelated failures).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest


def _reachable(url: str, default_port: int) -> tuple[bool, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return False, f"{host}:{port} ({exc.strerror or exc})"
    return True, f"{host}:{port}"


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    problems = []
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        ok, where = _reachable(f"postgres://{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}", 5432)
        if not ok:
            problems.append(f"PostgreSQL is not reachable at {where}; set OCRDASH_TEST_DATABASE_URL")
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("redis"):
        ok, where = _reachable(broker, 6379)
        if not ok:
            problems.append(f"Redis is not reachable at {where}; set OCRDASH_TEST_BROKER_URL")
    if problems:
        pytest.exit(
            "The test suite needs real servers:\n  - "
            + "\n  - ".join(problems)
            + "\nStart them (.ci/run does) and run again.",
            returncode=4,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every transactional test puts back the rows the migrations made (roles' groups, schedules).

    A transactional test (``transaction=True``, ``transactional_db``, ``live_server``) empties
    the database when it ends. Without serialized rollback that flush also drops the rows the
    migrations inserted and re-creates content types through post_migrate, so the *next*
    test that restores the serialized rows fails on duplicate content types, and later ones
    miss the role groups. One rule here, instead of a flag that every test file must remember.
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        kwargs = dict(marker.kwargs) if marker is not None else {}
        uses = set(getattr(item, "fixturenames", ()))
        transactional = bool(kwargs.get("transaction")) or bool({"transactional_db", "live_server"} & uses)
        if transactional and not kwargs.get("serialized_rollback"):
            kwargs.update(transaction=True, serialized_rollback=True)
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)
