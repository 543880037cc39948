"""The web and worker processes log through workers.logs: request ids, task ids, one line each."""

from __future__ import annotations

import io
import logging
import logging.config

import pytest
from django.conf import settings
from django.test import Client

from models_admin import tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def lines():
    """settings.LOGGING applied as the web process applies it, into a buffer."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.config.dictConfig(settings.LOGGING)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield lambda: stream.getvalue().splitlines()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_request_has_an_id_on_its_log_lines_and_in_its_response(lines):
    response = Client().get("/no-such-page/")
    request_id = response["X-Request-ID"]
    assert len(request_id) == 16
    logged = [line for line in lines() if "Not Found: /no-such-page/" in line]
    assert logged and f" WARNING django.request request={request_id} Not Found" in logged[0]


def test_a_proxys_request_id_is_kept_and_a_forged_one_replaced():
    assert (
        Client().get("/accounts/login/", HTTP_X_REQUEST_ID="lb-0123456789")["X-Request-ID"] == "lb-0123456789"
    )
    forged = Client().get("/accounts/login/", HTTP_X_REQUEST_ID="x\n2026 INFO forged")["X-Request-ID"]
    assert "\n" not in forged and "forged" not in forged


def test_a_task_has_its_id_on_its_log_lines(lines):
    result = tasks.ingest_report.apply(args=({"not": "a report"},), task_id="task-id-1234")
    assert result.get() == ["rejected"]  # the ingest task takes a batch (of one, here)
    logged = [line for line in lines() if "task=task-id-1234" in line]
    assert logged, lines()
    assert all(" WARNING models_admin." in line or " INFO " in line for line in logged)
