"""The demo stops every process it started: whole process groups, stubborn ones included."""

from __future__ import annotations

import os
import signal
import sys
import time

from .demo_runner import load, processes_mentioning

demo = load()

# A parent that ignores SIGTERM and leaves a grandchild behind: what a worker with a pool,
# stuck in a task, looks like to the runner.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("ready", flush=True)
time.sleep(600)
"""
POLITE = "import time; print('ready', flush=True); time.sleep(600)"


def _wait_ready(child, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A line of its own: the log's header line quotes the command, "ready" included.
        if "ready" in child.log_path.read_text().splitlines():
            return
        time.sleep(0.05)
    raise AssertionError(f"{child.name} did not start: {child.tail()}")


def test_it_kills_whole_groups_and_leaves_nothing_running(tmp_path):
    marker = f"OCRDASH_SUPERVISOR_TEST={tmp_path}"
    env = {**os.environ, "OCRDASH_SUPERVISOR_TEST": str(tmp_path)}
    sup = demo.Supervisor(tmp_path / "logs")
    polite = sup.start("polite", [sys.executable, "-c", POLITE], env, tmp_path)
    stubborn = sup.start("stubborn", [sys.executable, "-c", STUBBORN], env, tmp_path)
    for child in (polite, stubborn):
        _wait_ready(child)
        # The banner's freeze command reads the group from <name>.pid beside the log.
        assert (tmp_path / "logs" / f"{child.name}.pid").read_text() == f"{child.proc.pid}\n"
        # Each child leads its own session, so a terminal's Ctrl-C reaches only the runner.
        assert os.getpgid(child.proc.pid) == child.proc.pid
        assert os.getsid(child.proc.pid) == child.proc.pid
    assert len(processes_mentioning(marker)) == 3

    killed = sup.stop_all(grace=1.0)

    assert killed == ["stubborn"]
    assert polite.proc.returncode == -signal.SIGTERM
    assert stubborn.proc.returncode == -signal.SIGKILL
    assert processes_mentioning(marker) == []


def test_it_notices_a_child_that_died(tmp_path):
    sup = demo.Supervisor(tmp_path / "logs")
    sup.start("short", [sys.executable, "-c", "print('bye')"], dict(os.environ), tmp_path)
    deadline = time.monotonic() + 20
    while sup.dead() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    dead = sup.dead()
    assert dead is not None and dead.name == "short"
    assert "bye" in dead.tail()
    assert sup.stop_all(grace=0.5) == []


def test_a_dead_agent_is_started_again_and_one_that_keeps_dying_stops_the_demo(tmp_path, capsys):
    import pytest

    env = dict(os.environ)
    sup = demo.Supervisor(tmp_path / "logs")
    counter = tmp_path / "starts"
    # Appends a line per start, then dies at once: an agent that cannot stay up.
    dies = f"open({str(counter)!r}, 'a').write('start\\n'); raise SystemExit(3)"
    sup.start("agent-ocr-x", [sys.executable, "-c", dies], env, tmp_path)
    try:
        with pytest.raises(demo.DemoError, match="agent-ocr-x keeps stopping"):
            demo.watch(sup, tmp_path / "mail.log")
    finally:
        sup.stop_all()
    starts = counter.read_text().splitlines()
    assert len(starts) == demo.AGENT_RESTARTS_PER_MINUTE + 1
    assert "agent-ocr-x stopped (exit code 3); starting it again" in capsys.readouterr().out


def test_another_process_dying_stops_the_demo_and_mails_are_printed(tmp_path, capsys):
    import pytest

    mail_log = tmp_path / "mail.log"
    mail_log.write_text("MAIL 2026-01-01 00:00:00 to old@x: before the start, not printed\n\n")
    sup = demo.Supervisor(tmp_path / "logs")
    writes = (
        f"import time; time.sleep(0.5); open({str(mail_log)!r}, 'a').write("
        "'MAIL 2026-01-01 00:00:01 to approver@ocrdash.demo: a request waits\\nbody\\n\\n'); time.sleep(2)"
    )
    sup.start("web", [sys.executable, "-c", writes], dict(os.environ), tmp_path)
    try:
        with pytest.raises(demo.DemoError, match="web stopped"):
            demo.watch(sup, mail_log)
    finally:
        sup.stop_all()
    out = capsys.readouterr().out
    assert "mail 2026-01-01 00:00:01 to approver@ocrdash.demo: a request waits" in out
    assert "before the start" not in out and "body" not in out
