"""The shipped image and compose run the agent so that its in-use check can see (issue case 6).

The in-use check fails closed: an agent that can inspect neither the kernel's lease on a file
nor the processes holding it refuses the item. The image and docker-compose.yml take the
first way (README, "Files in use"): every agent runs as uid 10001, the owner of /models, so
the lease test covers every container. If one of them drifted (an agent as another user, the
folder owned by root), every prune there would end ``skipped_in_use``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
AGENT_UID = "10001"


def test_every_agent_service_runs_as_the_owner_of_the_model_folder():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    agents = {
        name: s
        for name, s in services.items()
        if "workers" in s.get("command", []) and "agent" in s["command"]
    }
    assert agents, "no agent service in docker-compose.yml"
    for name, service in agents.items():
        assert service.get("user") == f"{AGENT_UID}:{AGENT_UID}", name
        assert service["environment"]["OCRDASH_MODELS_DIR"] == "/models", name


def test_the_image_user_owns_the_model_folder():
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"useradd [^\n]*--uid (\d+)[^\n]* (\w+)\s*\\", dockerfile)
    assert user is not None and user.group(1) == AGENT_UID
    name = user.group(2)
    assert re.search(rf"chown -R {name}:{name} [^\n]*/models", dockerfile)
    assert re.search(rf"^USER {name}$", dockerfile, re.M)


def test_the_readme_says_which_way_the_shipped_setup_takes():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Files in use", 1)[1].split("\n## ", 1)[0]
    assert "CAP_SYS_PTRACE" in section and "PID namespace" in section
    assert f"uid {AGENT_UID}" in section and "`skipped_in_use`" in section
