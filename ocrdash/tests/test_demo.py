"""``make demo`` end to end: SQLite, the filesystem broker, real workers and three real agents.

The runner is started as a user would (``python scripts/demo.py``) in a temporary folder on a
free port. It must show the three hosts to a logged-in user, stop everything on SIGINT or
SIGTERM, and come back up on the same folder.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .demo_runner import DEMO_SCRIPT, processes_mentioning

pytestmark = pytest.mark.slow

HOSTS = ("ocr-east-1", "ocr-west-1", "ocr-lab")
READY_WITHIN = 60.0  # seconds from start until the hosts show in the browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    """One run of scripts/demo.py, its output collected by a thread (a pipe must be drained)."""

    def __init__(self, var: Path, port: int) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_", "DATABASE_URL"))
        }
        self.proc = subprocess.Popen(
            [
                *(sys.executable, str(DEMO_SCRIPT), "--var-dir", str(var), "--port", str(port)),
                *("--host-timeout", str(READY_WITHIN)),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Like a terminal: the runner leads its own group, and the test signals only it.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"the demo exited ({self.proc.returncode}) before {text!r}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} after {timeout:.0f}s:\n{self.output}")
            time.sleep(0.2)

    def accounts(self) -> dict[str, str]:
        """username -> password, as printed in the banner."""
        found = {}
        for line in self.lines:
            m = re.fullmatch(r"\s{4}(\w+)\s+(\S+)\s+(admin|operator|approver)", line)
            if m:
                found[m.group(1)] = m.group(2)
        return found

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"the demo did not stop within {timeout:.0f}s after {sig!r}:\n{self.output}")
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM)


def _fleet_page(port: int, username: str, password: str) -> str:
    """Log in through the real login form (CSRF cookie and all) and fetch the overview."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    login = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    request = urllib.request.Request(
        f"{base}/accounts/login/", data=form.encode(), headers={"Referer": f"{base}/accounts/login/"}
    )
    response = opener.open(request, timeout=10)
    assert "/accounts/login/" not in response.url, f"login as {username} failed"
    return opener.open(f"{base}/", timeout=10).read().decode()


def _assert_nothing_left(var: Path) -> None:
    deadline = time.monotonic() + 5
    while (left := processes_mentioning(str(var))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"still running after the demo stopped: {left}"


def test_make_demo_shows_three_hosts_and_stops_cleanly(tmp_path):
    var = tmp_path / "demo"
    port = _free_port()
    started = time.monotonic()
    demo = Demo(var, port)
    try:
        demo.wait_for("Press Ctrl-C to stop everything.", READY_WITHIN + 30)
        accounts = demo.accounts()
        assert set(accounts) == {"admin", "operator", "approver"}, demo.output
        assert f"http://127.0.0.1:{port}/" in demo.output
        page = _fleet_page(port, "operator", accounts["operator"])
        for host in HOSTS:
            assert f">{host}<" in page, f"{host} not on the overview"
        assert time.monotonic() - started < READY_WITHIN + 30
        # The missing model folder is a reported state, not a crashed agent.
        assert "Model folder missing" in page
        assert "ocr-west-1: the operator proposed pruning its old_ models" in demo.output
        assert len(processes_mentioning(str(var))) >= 6  # web, ingest, beat, three agents
        # Nobody else on the machine reads the demo's database, its keys or its tokens.
        secrets_made = [
            var / "ocrdash.sqlite3",
            var / "keys" / "django-secret-key",
            var / "keys" / "dashboard.key",
        ]
        secrets_made += list(var.glob("ocrdash.sqlite3-*")) + list(var.glob("hosts/*/state/agent.key"))
        for path in secrets_made:
            assert path.stat().st_mode & 0o777 == 0o600, f"{path} is {oct(path.stat().st_mode & 0o777)}"
        # The approver is told, by email to the demo's mail sink, that a request waits.
        demo.wait_for("to approver@ocrdash.demo: Prune request", 120)
        mail = (var / "mail.log").read_text()
        assert "waits for your approval" in mail and f"Open: http://127.0.0.1:{port}/requests/" in mail
        assert "to operator@ocrdash.demo" not in mail, "the proposer is not told of their own request"
        # One host's disk is filling: the approver is told it passed its watermark, and the fleet
        # page gives it a number of days until full.
        demo.wait_for("% used, over its high mark of", 120)
        assert "to approver@ocrdash.demo: ocr-east-2: disk " in demo.output
        assert 'title="days until full' in _fleet_page(port, "operator", accounts["operator"])
        # The large model's first hashing ends with its result (the page's bar: test_browser_live).
        demo.wait_for("ocr-west-1: inventory done: ", 240)
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.output
    assert "All demo processes stopped." in demo.output
    assert "forced to kill" not in demo.output, demo.output
    _assert_nothing_left(var)

    # A second run on the same folder reuses it: same accounts, same hosts, no duplicates.
    again = Demo(var, port)
    try:
        again.wait_for("Press Ctrl-C to stop everything.", READY_WITHIN + 30)
        page = _fleet_page(port, "approver", again.accounts()["approver"])
        for host in HOSTS:
            assert page.count(f">{host}<") == 1, f"{host} shown {page.count(f'>{host}<')} times"
        assert "changed, asking for an inventory" not in again.output, "the file changes only once"
        assert "proposed pruning" not in again.output, "the first request is proposed only once"
        assert "has been filling" not in again.output, "the disk's past is written only once"
    finally:
        code = again.stop(signal.SIGTERM)
    assert code == 0, again.output
    _assert_nothing_left(var)
