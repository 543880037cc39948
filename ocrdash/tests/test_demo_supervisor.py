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
