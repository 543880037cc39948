"""Finding 6 and the README's production section, end to end: with .env.example's values (a
real key in place of the placeholder) the dashboard collects its static files, gunicorn serves
the login and fleet pages with DEBUG off over the TLS proxy's header, and a password guesser
is locked out.

Plain ``http.client``: the cookies are Secure (the proxy speaks HTTPS to the browser), so the
test carries them by hand as the proxy's client would.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from .test_production import ROOT, manage, production_env

pytestmark = pytest.mark.slow
PASSWORD = "a-long-password-for-alice-7"


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Just enough of one: cookies across requests, and the headers the TLS proxy adds."""

    def __init__(self, port: int) -> None:
        self.port, self.cookies = port, SimpleCookie()

    def request(self, method: str, path: str, body: str = "", proxied: bool = True, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if proxied:
            headers.setdefault("X-Forwarded-Proto", "https")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        for value in response.headers.get_all("Set-Cookie") or []:
            self.cookies.load(value)
        conn.close()
        return response, text

    def log_in(self, username: str, password: str):
        _, page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        origin = f"https://127.0.0.1:{self.port}"
        form = f"csrfmiddlewaretoken={token}&username={username}&password={password}&next=/"
        return self.request(
            "POST", "/accounts/login/", form, Origin=origin, Referer=f"{origin}/accounts/login/"
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("production")
    env = production_env(**{k: v for k, v in _env_example().items() if k.startswith(("DJANGO_", "OCRDASH_"))})
    env.update(
        {
            "DJANGO_SECRET_KEY": production_env()["DJANGO_SECRET_KEY"],
            "DJANGO_TRUSTED_PROXY_COUNT": "0",  # nothing in front adds X-Forwarded-For here
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "OCRDASH_BROKER_FOLDER": str(tmp / "broker"),
            "OCRDASH_SIGNING_KEY_FILE": str(tmp / "keys" / "dashboard.key"),
            "DJANGO_STATIC_ROOT": str(tmp / "static"),
            "ALICE_PW": PASSWORD,
        }
    )
    env.pop("OCRDASH_CACHE_URL", None)  # no Redis named "redis" here: each process counts alone
    for step in (
        ["migrate", "--noinput"],
        ["collectstatic", "--noinput"],
        ["create_user", "alice", "--role", "viewer", "--password-env", "ALICE_PW"],
    ):
        done = manage(*step, env=env)
        assert done.returncode == 0, (step, done.stderr[-3000:])
    port = _free_port()
    log = (tmp / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            *("-c", "python:ocrdash.gunicorn_conf"),  # as docker-compose.yml and the image run it
            "ocrdash.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, Path(log.name).read_text()[-3000:]
                assert time.monotonic() < deadline, "gunicorn did not listen"
                time.sleep(0.3)
        yield port, Path(log.name)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def test_gunicorn_serves_the_login_page_and_its_styles_with_the_security_headers(server):
    browser = Browser(server[0])
    plain, _ = browser.request("GET", "/accounts/login/", proxied=False)
    assert plain.status == 301 and plain.getheader("Location").startswith("https://")

    response, page = browser.request("GET", "/accounts/login/")

    assert response.status == 200 and 'name="password"' in page
    assert "max-age=31536000" in response.getheader("Strict-Transport-Security")
    assert "script-src 'self'" in response.getheader("Content-Security-Policy")
    assert browser.cookies["csrftoken"]["secure"]
    stylesheet = re.search(r'href="(/static/[^"]+bootstrap\.min\.[0-9a-f]+\.css)"', page).group(1)
    css, _ = browser.request("GET", stylesheet)
    assert css.status == 200 and "immutable" in css.getheader("Cache-Control", "")


def test_a_user_logs_in_and_sees_the_fleet_page(server):
    browser = Browser(server[0])
    response, _ = browser.log_in("alice", PASSWORD)
    assert response.status == 302, response.status
    assert browser.cookies["sessionid"]["secure"] and browser.cookies["sessionid"]["httponly"]
    fleet, page = browser.request("GET", "/")
    assert fleet.status == 200 and "Fleet" in page and "alice" in page


def test_a_password_guesser_is_locked_out_even_with_the_right_password(server):
    guesser = Browser(server[0])
    for attempt in range(4):
        response, page = guesser.log_in("alice", f"guess-{attempt}")
        assert response.status == 200 and "Wrong user name or password" in page
    # The fifth failure (OCRDASH_LOGIN_FAILURE_LIMIT) locks, and says so at once.
    response, page = guesser.log_in("alice", "guess-4")
    assert response.status == 429
    response, page = guesser.log_in("alice", PASSWORD)
    assert response.status == 429
    assert "Too many failed logins" in page and "15 minutes" in page


def test_gunicorn_answers_the_compose_health_check_and_guards_metrics(server):
    # The path and header docker-compose.yml's web health check asks with, DEBUG off.
    browser = Browser(server[0])
    response, body = browser.request("GET", "/healthz/web?format=json")
    assert response.status == 200, body
    assert set(json.loads(body).values()) == {"OK"}
    refused, _ = browser.request("GET", "/metrics")
    assert refused.status == 401


LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+"
    r" (-|request=[\w.-]+) \S"
)


def test_every_line_gunicorn_writes_has_time_level_logger_and_request_id(server):
    port, log = server
    browser = Browser(port)
    response, _ = browser.request("GET", "/accounts/login/?from=log-test")
    request_id = response.getheader("X-Request-ID")
    deadline = time.monotonic() + 30
    while "GET /accounts/login/?from=log-test" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = log.read_text().splitlines()
    assert any(" INFO gunicorn.error - Booting worker" in line for line in lines), lines[:5]
    assert all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)]
    # The access line carries the id the response named, like the request's other lines.
    access = [line for line in lines if "GET /accounts/login/?from=log-test" in line]
    assert len(access) == 1 and f" INFO gunicorn.access request={request_id} 127.0.0.1 " in access[0], access
    assert '" 200 ' in access[0]
