"""Finding 1 (API): token guessing, anonymous calls and a busy user are throttled (429)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from models_admin.api.tokens import issue_token

pytestmark = pytest.mark.django_db
URL = "/api/hosts/"


@pytest.fixture
def rates(monkeypatch, settings):
    """Small rates, and a fresh count: DRF reads the rates once, at import."""
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "5/minute", "user": "8/minute"})
    yield
    cache.clear()


def test_guessing_tokens_is_refused_with_429_after_the_anonymous_rate(rates, viewer):
    client = Client(REMOTE_ADDR="10.9.0.1")
    codes = [client.get(URL, HTTP_AUTHORIZATION=f"Token guess{i:036d}").status_code for i in range(8)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    # Even the right token is not checked from that address until the window passes ...
    real = issue_token(viewer)
    response = client.get(URL, HTTP_AUTHORIZATION=f"Token {real}")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    # ... while another address is not affected.
    assert Client(REMOTE_ADDR="10.9.0.2").get(URL, HTTP_AUTHORIZATION=f"Token {real}").status_code == 200


def test_anonymous_calls_are_throttled_per_address(rates, db):
    client = Client(REMOTE_ADDR="10.9.1.1")
    codes = [client.get(URL).status_code for _ in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    # A forged X-Forwarded-For is not a new address (no trusted proxy is configured).
    assert client.get(URL, HTTP_X_FORWARDED_FOR="192.0.2.7").status_code == 429


def test_a_signed_in_user_is_throttled_at_the_user_rate(rates, viewer):
    token = issue_token(viewer)
    client = Client(REMOTE_ADDR="10.9.2.1", HTTP_AUTHORIZATION=f"Token {token}")
    codes = [client.get(URL).status_code for _ in range(10)]
    assert codes[:8] == [200] * 8 and codes[8:] == [429, 429]
    body = client.get(URL).json()
    assert "throttled" in str(body).lower() or "request was throttled" in str(body).lower()
