"""The agent's presence: heartbeat contents, its settings, and the real worker beating and
re-announcing itself after it lost the broker (a private Redis server, stopped and started)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from workers.config import ConfigError, load_config, parse_labels
from workers.presence import heartbeat_report, model_dir_state
from workers.schema import INGEST_TASK, HeartbeatReport, ModelDirState, SchemaError, parse_report
from workers.signing.envelope import verify
from workers.signing.keys import load_private_key, public_key_text
from workers.trust import AGENT_KEY_FILE

ROOT = Path(__file__).resolve().parents[2]


def test_labels_parse_and_bad_ones_name_the_variable() -> None:
    assert parse_labels(" env=prod, region=eu ,") == {"env": "prod", "region": "eu"}
    assert parse_labels("") == {}
    for bad in ("env", "Env=prod", "env=pr od", "=x"):
        with pytest.raises(ConfigError, match="OCRDASH_HOST_LABELS"):
            parse_labels(bad)


def test_heartbeat_settings_default_and_bounds(tmp_path: Path) -> None:
    base = {"OCRDASH_STATE_DIR": str(tmp_path / "s")}
    config = load_config(base)
    assert config.heartbeat_seconds == 30 and config.labels == {}
    config = load_config({**base, "OCRDASH_HEARTBEAT_SECONDS": "5", "OCRDASH_HOST_LABELS": "env=prod"})
    assert config.heartbeat_seconds == 5 and config.labels == {"env": "prod"}
    for bad in ("-1", "often", "90000"):
        with pytest.raises(ConfigError, match="OCRDASH_HEARTBEAT_SECONDS"):
            load_config({**base, "OCRDASH_HEARTBEAT_SECONDS": bad})


def test_heartbeat_says_folder_state_disk_and_labels(models_dir: Path, state_dir: Path) -> None:
    config = load_config(
        {
            "OCRDASH_HOST_NAME": "ocr-1",
            "OCRDASH_MODELS_DIR": str(models_dir),
            "OCRDASH_STATE_DIR": str(state_dir),
            "OCRDASH_HOST_LABELS": "region=eu",
        }
    )
    report = heartbeat_report(config, models_dir, backlog=4)
    assert report.model_dir_state is ModelDirState.OK and report.disk_free and report.disk_total
    assert report.labels == {"region": "eu"} and report.backlog == 4 and report.interval_seconds == 30
    # Small: a heartbeat is a few hundred bytes whatever the folder holds.
    assert len(str(report.to_json())) < 1000
    shutil.rmtree(models_dir)
    gone = heartbeat_report(config, models_dir)
    assert gone.model_dir_state is ModelDirState.MISSING and gone.disk_free is None
    assert model_dir_state(models_dir) is ModelDirState.MISSING


def test_heartbeat_round_trips_and_bad_ones_are_refused() -> None:
    report = HeartbeatReport(host="ocr-1", interval_seconds=30, model_dir_state=ModelDirState.OK)
    assert parse_report(report.to_json()) == report
    for field, value in (("interval_seconds", 0), ("labels", {"k": "v" * 64}), ("backlog", -1)):
        data = {**report.to_json(), field: value}
        with pytest.raises(SchemaError, match=field):
            parse_report(data)
    with pytest.raises(SchemaError, match="labels"):
        parse_report({**report.to_json(), "labels": {f"k{i}": "v" for i in range(33)}})


# ---------------------------------------------------------------- the real worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("the private redis-server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def take(
    url: str, queue: str, host: str, state_dir: Path, count: int, log: Path, timeout: float = 60
) -> list[Any]:
    """The next ``count`` signed reports on ``queue``, signature checked against the agent's key."""
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"got {[r.kind for r in found]} of {count}; agent log:\n{log.read_text()[-3000:]}")
        try:
            with Connection(url, connect_timeout=2) as conn:
                simple = conn.SimpleQueue(queue)
                try:
                    message = simple.get(block=True, timeout=1)
                except simple.Empty:
                    continue
                finally:
                    simple.close()
                args, _kw, _embed = message.decode()
                message.ack()
        except OSError:
            time.sleep(0.2)
            continue
        assert message.headers["task"] == INGEST_TASK
        key = load_private_key(state_dir / AGENT_KEY_FILE).public_key()
        found.append(
            parse_report(verify(args[0], key, expected_signer=host, expected_purpose=INGEST_TASK).body)
        )
    return found


@pytest.mark.slow
def test_the_worker_beats_and_sends_an_inventory_after_every_reconnect(
    tmp_path: Path, models_dir: Path, state_dir: Path, dashboard_key
) -> None:
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port, redis_dir)
    host, ingest = f"beat-{uuid.uuid4().hex[:8]}", "ocrdash.ingest.beats"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_"))}
    env.update(
        OCRDASH_BROKER_URL=url,
        OCRDASH_HOST_NAME=host,
        OCRDASH_MODELS_DIR=str(models_dir),
        OCRDASH_STATE_DIR=str(state_dir),
        OCRDASH_INGEST_QUEUE=ingest,
        OCRDASH_DASHBOARD_PUBLIC_KEY=public_key_text(dashboard_key),
        OCRDASH_HEARTBEAT_SECONDS="1",
        OCRDASH_HOST_LABELS="env=test,region=eu",
    )
    log = tmp_path / "agent.log"
    (models_dir / "en_ocr_v1.gguf").write_bytes(b"en")
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        first = take(url, ingest, host, state_dir, 3, log)
        # The startup inventory goes first; beats follow once it was sent, every second.
        assert first[0].kind == "inventory"
        beats = [r for r in first[1:] if r.kind == "heartbeat"]
        assert beats and beats[0].labels == {"env": "test", "region": "eu"}
        assert beats[0].interval_seconds == 1 and beats[0].model_dir_state is ModelDirState.OK

        stop(redis)  # the broker goes away (and with it every queue: --save '')
        time.sleep(3)
        redis = start_redis(port, redis_dir)
        after = take(url, ingest, host, state_dir, 1, log, timeout=90)
        deadline = time.monotonic() + 60
        while not any(r.kind == "inventory" for r in after):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no inventory after the reconnect: {[r.kind for r in after]}\n{log.read_text()[-3000:]}"
                )
            after += take(url, ingest, host, state_dir, 1, log)
        assert any(r.kind == "heartbeat" for r in take(url, ingest, host, state_dir, 3, log))
        assert agent.poll() is None
    finally:
        stop(agent)
        stop(redis)
