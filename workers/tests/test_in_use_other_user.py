"""The in-use check fails closed: the agent's code run as nobody against a file root holds open.

As ``nobody`` the agent may read neither root's ``/proc/<pid>/fd`` nor its ``maps``. The
child keeps CAP_DAC_READ_SEARCH only so it can reach this checkout's interpreter; that
capability lets it list another user's fd folder but not follow the links in it, nor read
the maps, so it stands for any unprivileged agent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534

PRUNE_AS_AGENT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from workers.prune import InUseCheck, Pruner
from workers.schema import FileIdentity, PruneMode
from workers.state import StateDB
models, state, item, mode, rid = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5], sys.argv[6]
with StateDB(state) as db:
    pruner = Pruner(models, db, in_use=InUseCheck(mode))
    [outcome] = pruner.prune(rid, [FileIdentity(**item)], PruneMode.QUARANTINE)
print(json.dumps(outcome.model_dump(mode="json")))
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to become nobody"
)


@pytest.fixture
def folders() -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="ocrdash-nobody-"))
    models, state = base / "models", base / "state"
    for path in (base, models, state):
        path.mkdir(exist_ok=True)
        os.chown(path, NOBODY, NOBODY)
    os.chmod(state, 0o700)
    try:
        yield models, state
    finally:
        shutil.rmtree(base)


def prune_as_nobody(models: Path, state: Path, path: Path, mode: str = "strict", rid: str = "r1") -> dict:
    data = path.read_bytes()
    st = path.stat()
    item = {
        "path": path.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--inh-caps=-all,+dac_read_search",
            "--ambient-caps=+dac_read_search",
            sys.executable,
            "-c",
            PRUNE_AS_AGENT,
            str(ROOT),
            str(models),
            str(state),
            json.dumps(item),
            mode,
            rid,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_file_root_holds_open_is_refused_when_the_agent_cannot_inspect_root(folders) -> None:
    models, state = folders
    path = models / "loaded.gguf"
    path.write_bytes(b"weights in use")  # owned by root: no lease for nobody either
    fd = os.open(path, os.O_RDONLY)  # held by this (root) process
    try:
        outcome = prune_as_nobody(models, state, path)
        assert outcome["outcome"] == "skipped_in_use"
        assert "cannot inspect the processes of other users" in outcome["detail"]
        assert path.exists()
    finally:
        os.close(fd)


def test_an_admin_may_choose_to_check_only_the_visible_processes(folders) -> None:
    models, state = folders
    path = models / "idle.gguf"
    path.write_bytes(b"weights nobody uses")
    outcome = prune_as_nobody(models, state, path, mode="visible-only")
    assert outcome["outcome"] == "quarantined"


def test_the_kernel_lease_catches_a_holder_that_proc_hides(folders) -> None:
    models, state = folders
    path = models / "owned.gguf"
    path.write_bytes(b"weights of the agent's user")
    os.chown(path, NOBODY, NOBODY)  # the agent owns its models: the lease test is open to it
    fd = os.open(path, os.O_RDONLY)
    try:
        outcome = prune_as_nobody(models, state, path)
        assert outcome["outcome"] == "skipped_in_use"
        assert "cannot inspect" in outcome["detail"] and "lease" in outcome["detail"]
    finally:
        os.close(fd)
    assert prune_as_nobody(models, state, path, rid="r2")["outcome"] == "quarantined"
