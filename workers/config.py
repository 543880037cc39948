"""The agent's settings, read from the environment.

The agent runs on OCR hosts that have no Django and no dashboard settings: it needs only the
broker's address and the few values below. A bad value stops the agent at start with a
message naming the variable, rather than surfacing later as a confusing task failure.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers.prune import InUseCheck
from workers.schema import (
    HOST_NAME_PATTERN,
    INGEST_QUEUE,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    MAX_LABELS,
    host_queue,
)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_QUARANTINE_DAYS = 7.0
DEFAULT_MAX_ATTEMPTS = 3
# The dashboard shows a host offline after three missed beats: 30 s gives presence in 90 s.
DEFAULT_HEARTBEAT_SECONDS = 30


class ConfigError(ValueError):
    """A setting is missing or malformed; ``str()`` names the variable."""


@dataclass(frozen=True)
class AgentConfig:
    broker_url: str
    host_name: str
    # None: Aspose's own default folder, resolved against the working directory.
    models_dir: Path | None
    state_dir: Path
    # None: Resources' own default folder (<working directory>/aspose_data).
    ocr_resources_dir: Path | None = None
    quarantine_days: float = DEFAULT_QUARANTINE_DAYS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ingest_queue: str = INGEST_QUEUE
    # Only for the filesystem:// broker: the folder shared by every process of the demo.
    broker_folder: Path | None = None
    # The dashboard's public key (``ed25519:...``) or the path of a file holding it: the one
    # key whose orders this agent obeys. Pinned at install; required to run the worker.
    dashboard_public_key: str = ""
    # A one-time enrollment token, used only to prove to the dashboard that this host's new
    # key was enrolled by an admin; never sent, never logged (hence repr=False).
    enrollment_token: str = field(default="", repr=False)
    # Seconds between heartbeats; 0 turns them off (the host then looks offline between inventories).
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS
    # What this host says about itself (OCRDASH_HOST_LABELS), shown apart on the dashboard.
    labels: dict[str, str] = field(default_factory=dict)
    # At most one progress report per this many seconds (or per 5 % of the work).
    progress_interval: float = 2.0
    # What a prune does when some processes cannot be inspected (see workers.prune.InUseCheck).
    in_use_check: InUseCheck = InUseCheck.STRICT

    @property
    def queue(self) -> str:
        return host_queue(self.host_name)


def sanitize_host_name(raw: str) -> str:
    """Turn a machine's host name into one that is valid in a queue name and a URL."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:128]
    return name or "localhost"


def _path(env: Mapping[str, str], key: str) -> Path | None:
    value = env.get(key, "").strip()
    if not value:
        return None
    return Path(os.path.abspath(os.path.expanduser(value)))


def _number(env: Mapping[str, str], key: str, default: float, *, integer: bool = False) -> float:
    value = env.get(key, "").strip()
    if not value:
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key} must be {kind}, got {value!r}") from None
    if number < 0 or number != number:  # NaN compares unequal to itself
        raise ConfigError(f"{key} must not be negative, got {value!r}")
    return number


def parse_labels(text: str, variable: str = "OCRDASH_HOST_LABELS") -> dict[str, str]:
    """``env=prod,region=eu`` as a dict; raises ConfigError naming the bad part."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if (
            not sep
            or not re.fullmatch(LABEL_KEY_PATTERN, key)
            or not re.fullmatch(LABEL_VALUE_PATTERN, value)
        ):
            raise ConfigError(
                f"{variable}: {part!r} is not key=value (key: a lower-case letter, then lower-case "
                "letters, digits, '.', '_', '-'; "
                "value: letters, digits, '.', '_', '-')"
            )
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise ConfigError(f"{variable}: at most {MAX_LABELS} labels, got {len(labels)}")
    return labels


def default_state_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(os.path.abspath(base)) / "ocrdash-agent"


def in_use_check_setting(env: Mapping[str, str] | None = None) -> InUseCheck:
    """``OCRDASH_IN_USE_CHECK``: ``strict`` (default) or ``visible-only``; read by the agent and the CLI."""
    env = os.environ if env is None else env
    value = env.get("OCRDASH_IN_USE_CHECK", "").strip().lower() or InUseCheck.STRICT.value
    try:
        return InUseCheck(value)
    except ValueError:
        choices = ", ".join(c.value for c in InUseCheck)
        raise ConfigError(f"OCRDASH_IN_USE_CHECK must be one of {choices}, got {value!r}") from None


def load_config(env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read the agent's settings; raises ConfigError on a bad value."""
    env = os.environ if env is None else env
    broker_url = (
        env.get("OCRDASH_BROKER_URL", "").strip()
        or env.get("CELERY_BROKER_URL", "").strip()
        or DEFAULT_BROKER_URL
    )
    if "://" not in broker_url:
        raise ConfigError(f"OCRDASH_BROKER_URL must look like redis://host:port/db, got {broker_url!r}")

    host_name = env.get("OCRDASH_HOST_NAME", "").strip() or sanitize_host_name(socket.gethostname())
    if not re.fullmatch(HOST_NAME_PATTERN, host_name):
        raise ConfigError(
            f"OCRDASH_HOST_NAME must match {HOST_NAME_PATTERN} (it becomes a queue name), got {host_name!r}"
        )

    models_dir = _path(env, "OCRDASH_MODELS_DIR")
    state_dir = _path(env, "OCRDASH_STATE_DIR") or default_state_dir(env)
    if models_dir is not None and (state_dir == models_dir or models_dir in state_dir.parents):
        # The walk would report the agent's own database as a model file.
        raise ConfigError("OCRDASH_STATE_DIR must not be inside OCRDASH_MODELS_DIR")
    ocr_dir = _path(env, "OCRDASH_OCR_RESOURCES_DIR")
    if ocr_dir is not None and (state_dir == ocr_dir or ocr_dir in state_dir.parents):
        raise ConfigError("OCRDASH_STATE_DIR must not be inside OCRDASH_OCR_RESOURCES_DIR")

    broker_folder = _path(env, "OCRDASH_BROKER_FOLDER")
    if broker_url.startswith("filesystem://") and broker_folder is None:
        raise ConfigError("OCRDASH_BROKER_FOLDER is required when the broker is filesystem://")

    ingest_queue = env.get("OCRDASH_INGEST_QUEUE", "").strip() or INGEST_QUEUE
    token = env.get("OCRDASH_ENROLLMENT_TOKEN", "").strip()
    token_file = _path(env, "OCRDASH_ENROLLMENT_TOKEN_FILE")
    if not token and token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            # The path, never the content: the file holds a secret.
            raise ConfigError(
                f"OCRDASH_ENROLLMENT_TOKEN_FILE cannot be read ({token_file}): {exc.strerror or exc}"
            ) from None
    heartbeat = int(_number(env, "OCRDASH_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS, integer=True))
    if heartbeat > 86_400:
        raise ConfigError(f"OCRDASH_HEARTBEAT_SECONDS must be at most 86400 (a day), got {heartbeat}")
    return AgentConfig(
        in_use_check=in_use_check_setting(env),
        broker_url=broker_url,
        host_name=host_name,
        models_dir=models_dir,
        state_dir=state_dir,
        ocr_resources_dir=ocr_dir,
        quarantine_days=_number(env, "OCRDASH_QUARANTINE_DAYS", DEFAULT_QUARANTINE_DAYS),
        max_attempts=max(1, int(_number(env, "OCRDASH_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, integer=True))),
        ingest_queue=ingest_queue,
        broker_folder=broker_folder,
        dashboard_public_key=env.get("OCRDASH_DASHBOARD_PUBLIC_KEY", "").strip(),
        enrollment_token=token,
        heartbeat_seconds=heartbeat,
        labels=parse_labels(env.get("OCRDASH_HOST_LABELS", "")),
        progress_interval=_number(env, "OCRDASH_PROGRESS_SECONDS", 2.0),
    )
