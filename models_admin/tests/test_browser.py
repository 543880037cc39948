"""The two-person rule in a real browser, with a real agent and a real ingest worker on Redis.

An operator proposes deleting a host's ``old_`` model, an approver approves it, the order
travels to the agent, the agent quarantines the file on disk, and the outcome comes back
through the ingest worker into the pages and the audit log. Screenshots of every step go to
``test-artifacts/browser/`` for a human to look at.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from kombu import Connection

from models_admin import trust
from models_admin.models import Host, PruneRequest
from models_admin.tests.conftest import PASSWORD
from workers.schema import host_queue

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT = 60.0
OLD_MODEL = "old_fr_ocr_v1.bin"


@dataclass
class Fleet:
    host: str
    models_dir: Path
    old_bytes: bytes


def _database_url() -> str:
    """The test database pytest-django created, for the ingest worker's own process."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait_until(condition, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.3)


@pytest.fixture
def fleet(transactional_db, tmp_path: Path) -> Iterator[Fleet]:
    """One OCR host: its real agent worker, plus the dashboard's real ingest worker."""
    run = uuid.uuid4().hex[:8]
    host, ingest_queue = f"ocr-browser-{run}", f"ocrdash.ingest.browser-{run}"
    models = tmp_path / "models"
    (models / "layout").mkdir(parents=True)
    old_bytes = os.urandom(300_000)
    (models / OLD_MODEL).write_bytes(old_bytes)
    (models / "en_ocr_v2.gguf").write_bytes(os.urandom(200_000))
    (models / "Llama-3.2-3B-Instruct-Q4_K_M.gguf").write_bytes(b"GGUF" + os.urandom(1000))
    broker = settings.CELERY_BROKER_URL
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}
    agent_log, ingest_log = tmp_path / "agent.log", tmp_path / "ingest.log"
    # Installed as a real host would be: the dashboard's key pinned, a one-time token.
    _row, token = trust.create_token("installer", host_name=host)
    ingest = _start(
        [
            *(sys.executable, "-m", "celery", "-A", "ocrdash", "worker", "-Q", ingest_queue, "-P", "solo"),
            *("-n", f"ingest-{run}@test", "--without-gossip", "--without-mingle", "-l", "INFO"),
        ],
        {
            **base,
            "DJANGO_SETTINGS_MODULE": "ocrdash.settings_test",
            "OCRDASH_TEST_DATABASE_URL": _database_url(),
            "OCRDASH_TEST_BROKER_URL": broker,
        },
        ingest_log,
    )
    agent = _start(
        [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
        {
            **base,
            "OCRDASH_BROKER_URL": broker,
            "OCRDASH_HOST_NAME": host,
            "OCRDASH_MODELS_DIR": str(models),
            "OCRDASH_STATE_DIR": str(tmp_path / "state"),
            "OCRDASH_INGEST_QUEUE": ingest_queue,
            "OCRDASH_DASHBOARD_PUBLIC_KEY": trust.dashboard_public_key(),
            "OCRDASH_ENROLLMENT_TOKEN": token,
        },
        agent_log,
    )
    try:
        _wait_until(
            lambda: Host.objects.filter(name=host, file_count=3).exists(),
            f"{host}'s first inventory",
            [agent_log, ingest_log],
        )
        call_command("accept_host", host, stdout=open(os.devnull, "w"))  # noqa: SIM115
        yield Fleet(host, models, old_bytes)
    finally:
        _stop(agent)
        _stop(ingest)
        with Connection(broker) as conn:
            for queue in (ingest_queue, host_queue(host)):
                conn.SimpleQueue(queue).queue.delete()


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between pages are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            # The ORM calls made while Playwright's loop ran opened their own connection (its
            # context differs from the test's); left open, it blocks dropping the test database.
            connections.close_all()
            browser.close()


def _login(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_operator_proposes_approver_approves_and_the_file_is_quarantined(
    live_server, fleet: Fleet, browser_page, operator, approver
):
    page, base = browser_page, live_server.url

    # The operator sees the fleet and the host, and proposes deleting the old model.
    _login(page, base, operator.username)
    page.get_by_role("link", name=fleet.host).wait_for()
    _shot(page, "1-fleet")
    page.get_by_role("link", name=fleet.host).click()
    page.wait_for_url(f"{base}/hosts/{fleet.host}/")
    page.get_by_label(f"select {OLD_MODEL}").check()
    page.fill("input[name=reason]", "superseded by fr_ocr_v2")
    _shot(page, "2-host-selected")
    page.get_by_role("button", name="Propose deletion").click()
    page.wait_for_url(re.compile(r".*/requests/[0-9a-f-]{36}/$"))
    request_url = page.url
    request_id = uuid.UUID(request_url.rstrip("/").rsplit("/", 1)[1])
    assert PruneRequest.objects.get(id=request_id).state == PruneRequest.State.PROPOSED
    assert page.get_by_role("button", name="Approve").count() == 0, "an operator cannot approve"
    _shot(page, "3-request-proposed")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/accounts/login/.*"))

    # The approver, a second person, approves; the order goes to the host's agent.
    _login(page, base, approver.username)
    page.goto(request_url)
    page.fill("input[name=comment]", "ok, fr v2 is live")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(request_url)
    _shot(page, "4-request-approved")

    logs = list(fleet.models_dir.parent.glob("*.log"))
    _wait_until(
        lambda: PruneRequest.objects.get(id=request_id).state == PruneRequest.State.COMPLETED,
        "the agent's outcome",
        logs,
    )
    page.reload()
    assert page.get_by_text("Completed").first.is_visible()
    assert page.get_by_text("quarantined").first.is_visible()
    _shot(page, "5-request-completed")

    # On disk: gone from the model folder, kept byte for byte in the quarantine.
    assert not (fleet.models_dir / OLD_MODEL).exists()
    quarantined = fleet.models_dir / ".ocrdash-quarantine" / request_id.hex / OLD_MODEL
    assert quarantined.read_bytes() == fleet.old_bytes
    assert (fleet.models_dir / "en_ocr_v2.gguf").exists()

    # The audit log names who proposed, who approved and what happened to the file.
    page.goto(f"{base}/audit/?host={fleet.host}")
    table = page.locator("table").first
    for text in (
        "Request proposed",
        "Request approved",
        "Item outcome",
        operator.username,
        approver.username,
    ):
        assert table.get_by_text(text).first.is_visible(), f"{text!r} missing from the audit log"
    _shot(page, "6-audit")
