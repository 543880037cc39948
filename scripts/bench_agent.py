"""Benchmark of the agent's walk and hashing against the floors named in issue 11.

Builds its own folders in a temporary directory (removed at the end), then measures, with
each floor timed in the same run:

* rescan of N unchanged files (``workers.inventory.scan`` with a warm hash cache)
  vs ``find DIR -printf '%p %s %T@\\n'``;
* first scan of N small files (empty state folder, every file hashed)
  vs ``find DIR -type f -exec sha256sum {} +``;
* a rescan of 10 x N files in a fresh process: time per file against an N-file rescan in a
  fresh process (linear growth), and that process's peak RSS: of the scan, and of the whole inventory (scan,
  report stored with the run, outbox read back, signed and serialised for the broker);
* bytes read on a rescan (the walk's own count, and the process's read bytes from
  /proc/self/io, which include the state database);
* hashing one large file vs hashlib over the same bytes already in memory;
* a prune of 1,000 files, with the number of /proc looks it took.

Every figure is printed as ours / floor / ratio, min and median of ``--runs`` runs (wall
clock; CPU time beside it, since a shared machine stretches wall time of both sides alike
only on average). The last line is ``SUMMARY rescan_vs_find=... first_scan_vs_sha256sum=...``
(min of the runs). ``--quick``: the same sizes, fewer runs.

    .venv/bin/python scripts/bench_agent.py [--quick] [--runs 5] [--files 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.aspose_backend import AsposeSession
from workers.hashing import HashCache
from workers.inventory import scan
from workers.state import StateDB

SMALL_SIZE = 4096
FILES_PER_DIR = 100
BIG_FILE_MB = 256
RSS_GOAL_MB = 150  # issue 11: a 100k-file inventory


def build_tree(root: Path, count: int) -> int:
    """``count`` distinct small files, FILES_PER_DIR to a folder; returns the total bytes."""
    total = 0
    block = os.urandom(SMALL_SIZE)
    for i in range(count):
        folder = root / f"d{i // FILES_PER_DIR:05d}"
        if i % FILES_PER_DIR == 0:
            folder.mkdir(parents=True)
        data = i.to_bytes(8, "little") + block[8:]
        (folder / f"model-{i:06d}.bin").write_bytes(data)
        total += len(data)
    return total


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0, result


def timed_command(argv: list[str], *, shell: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children) of one run, output discarded."""
    wall0 = time.perf_counter()
    proc = subprocess.Popen(argv, shell=shell, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - wall0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"floor command failed ({proc.returncode}): {argv}")
    # sha256sum runs as find's child: count the whole tree's CPU.
    return wall, usage.ru_utime + usage.ru_stime


def read_bytes() -> int:
    """Bytes this process read through read()/pread() so far (``rchar`` of /proc/self/io)."""
    with open("/proc/self/io") as io:
        for line in io:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1


class Figure:
    def __init__(self, name: str, unit: str = "ms") -> None:
        self.name, self.unit = name, unit
        self.ours: list[float] = []
        self.floor: list[float] = []
        self.ours_cpu: list[float] = []
        self.floor_cpu: list[float] = []

    def ratio(self, which: str = "min", cpu: bool = False) -> float:
        ours = self.ours_cpu if cpu else self.ours
        floor = self.floor_cpu if cpu else self.floor
        pick = min if which == "min" else statistics.median
        return pick(ours) / pick(floor)

    def line(self, floor_name: str) -> str:
        def ms(values: list[float]) -> str:
            return f"{min(values) * 1000:8.1f} / {statistics.median(values) * 1000:8.1f}"

        return (
            f"{self.name:<34} ours {ms(self.ours)} ms  floor ({floor_name}) {ms(self.floor)} ms"
            f"  ratio {self.ratio('min'):5.2f} / {self.ratio('median'):5.2f}"
            f"  (cpu ratio {self.ratio('min', cpu=True):5.2f})"
        )


def scan_once(models: Path, state: Path) -> tuple[float, float, object]:
    with AsposeSession(models, state) as session:  # opened outside the timer: every order has one

        def run() -> object:
            with StateDB(state) as db:
                return scan(session, db)

        return timed(run)


# A rescan in a fresh interpreter: its time and the peak RSS of the scan alone.
SCAN_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from workers.aspose_backend import AsposeSession
from workers.inventory import scan
from workers.state import StateDB
with AsposeSession(sys.argv[1], sys.argv[2]) as session:
    t0 = time.perf_counter(); c0 = time.process_time()
    with StateDB(sys.argv[2]) as db:
        result = scan(session, db)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"wall": wall, "cpu": cpu, "files": len(result.files), "hashed": result.stats.files_hashed}))
"""

# One inventory order as the agent's Celery task runs it, in a fresh interpreter: the signed
# order checked, the scan, the report built and stored with the run (Agent.handle), then the
# outbox flushed while the task still holds its reports (read back, checked, signed with the
# host key and serialised for the broker as kombu does). Its peak RSS is the whole inventory's.
INVENTORY_CHILD = r"""
import json, sys
from datetime import timedelta
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from workers.config import AgentConfig
from workers.reporting import flush_outbox
from workers.schema import AgentTask, InventoryOrder, utcnow
from workers.signing.envelope import DASHBOARD_SIGNER, sign
from workers.signing.keys import public_key_text
from workers.tasks import Agent
models, state, ocr = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[4])
class Broker:
    body_bytes = 0
    def send_task(self, name, args, **options):
        self.body_bytes = len(json.dumps(args))
dashboard = Ed25519PrivateKey.generate()
config = AgentConfig(broker_url="memory://", host_name="bench-host", models_dir=models, state_dir=state,
                     ocr_resources_dir=ocr, dashboard_public_key=public_key_text(dashboard))
order = InventoryOrder(host="bench-host", request_id=sys.argv[5], expires_at=utcnow() + timedelta(hours=1))
message = sign(order.to_json(), dashboard, signer=DASHBOARD_SIGNER, purpose=AgentTask.INVENTORY)
agent = Agent(config)
reports = agent.handle(AgentTask.INVENTORY, message)
broker = Broker()
sent = flush_outbox(broker, agent.db, agent.trust)
agent.close()
assert [r.kind for r in reports] == ["inventory"] and sent == 1, (reports, sent)
print(json.dumps({"files": len(reports[0].to_json()["files"]), "json_bytes": broker.body_bytes}))
"""


def child(code: str, *args: str) -> tuple[dict[str, float], float]:
    """``code`` run in a fresh interpreter: (the JSON it printed, its peak RSS in MB)."""
    repo = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, args[0], args[1], repo, *args[2:]], stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit("child failed")
        out.seek(0)
        return json.loads(out.read()), usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same sizes, 3 runs")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (at least 3)")
    parser.add_argument("--files", type=int, default=10_000, help="files of the small folder")
    parser.add_argument(
        "--big-factor", type=int, default=10, help="the large folder has this many times more"
    )
    parser.add_argument("--workdir", help="where to build the folders (default: a temporary directory)")
    args = parser.parse_args()
    runs = 3 if args.quick else max(3, args.runs)
    work = Path(tempfile.mkdtemp(prefix="bench-agent-", dir=args.workdir))
    try:
        return run(work, runs, args.files, args.files * args.big_factor)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, runs: int, n: int, big_n: int) -> int:
    small, big = work / "small", work / "big"
    one, five, _ = os.getloadavg()
    print(f"building {n} and {big_n} files of {SMALL_SIZE} B in {work} ...", flush=True)
    print(f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores at the start", flush=True)
    small_bytes = build_tree(small, n)
    build_tree(big, big_n)
    find_list = ["find", str(small), "-printf", "%p %s %T@\\n"]
    sha_cmd = f"find {small} -type f -exec sha256sum {{}} + > /dev/null"
    # Warm the page cache for both sides alike.
    timed_command(find_list)
    timed_command(sha_cmd, shell=True)

    first = Figure(f"first scan, {n} small files")
    rescan = Figure(f"rescan, {n} unchanged files")
    rescan_read: list[int] = []
    for i in range(runs):
        state = work / f"state-{i}"
        w, c = timed_command(sha_cmd, shell=True)
        first.floor.append(w)
        first.floor_cpu.append(c)
        w, c, result = scan_once(small, state)
        assert result.stats.files_hashed == n, result.stats  # type: ignore[attr-defined]
        first.ours.append(w)
        first.ours_cpu.append(c)

        w, c = timed_command(find_list)
        rescan.floor.append(w)
        rescan.floor_cpu.append(c)
        before = read_bytes()
        w, c, result = scan_once(small, state)
        rescan_read.append(read_bytes() - before)
        assert result.stats.files_hashed == 0 and result.stats.bytes_hashed == 0, result.stats  # type: ignore[attr-defined]
        rescan.ours.append(w)
        rescan.ours_cpu.append(c)
        shutil.rmtree(state)

    # Large folder: first scan in a child (fills the cache), then the measured rescans.
    big_state = work / "state-big"
    child(SCAN_CHILD, str(big), str(big_state))
    ocr_store = work / "ocr-resources"
    ocr_store.mkdir()
    big_fig = Figure(f"rescan, {big_n} unchanged files")
    rss: list[float] = []
    scan_rss: list[float] = []
    json_bytes = 0
    for _ in range(runs):
        w, c = timed_command(["find", str(big), "-printf", "%p %s %T@\\n"])
        big_fig.floor.append(w)
        big_fig.floor_cpu.append(c)
        figures, peak = child(SCAN_CHILD, str(big), str(big_state))
        assert figures["hashed"] == 0 and figures["files"] == big_n, figures
        big_fig.ours.append(figures["wall"])
        big_fig.ours_cpu.append(figures["cpu"])
        scan_rss.append(peak)
        figures, peak = child(INVENTORY_CHILD, str(big), str(big_state), str(ocr_store), f"inv-{len(rss)}")
        assert figures["files"] == big_n, figures
        rss.append(peak)
        json_bytes = int(figures["json_bytes"])
    # Growth compares like with like: a rescan in a fresh process at N files and at 10 x N
    # (the in-process rescan above has this process's copy of the hash rows; a fresh process
    # reads them from the state database, as the 10 x N one does).
    small_state = work / "state-small-fresh"
    child(SCAN_CHILD, str(small), str(small_state))
    fresh_small = [child(SCAN_CHILD, str(small), str(small_state))[0]["wall"] for _ in range(runs)]
    per_file_small = min(fresh_small) / n
    per_file_big = min(big_fig.ours) / big_n
    growth = per_file_big / per_file_small

    hashing = bench_hashing(work, runs)
    prune_line = bench_prune(work, min(1000, n))

    print()
    print(first.line("find -exec sha256sum"))
    print(rescan.line("find -printf"))
    print(big_fig.line("find -printf"))
    print(hashing.line("hashlib in memory"))
    print(
        f"{'growth 10k -> 100k (per file)':<34} {per_file_small * 1e6:.2f} us -> {per_file_big * 1e6:.2f} us"
        f"  ratio {growth:.2f} (1.0 is linear; both rescans in a fresh process)"
    )
    print(
        f"{'peak RSS, rescan of ' + str(big_n) + ' files':<34} min {min(scan_rss):.0f} MB, median"
        f" {statistics.median(scan_rss):.0f} MB (Python, pydantic and Aspose's runtime included)"
    )
    print(
        f"{'peak RSS, whole inventory':<34} min {min(rss):.0f} MB, median {statistics.median(rss):.0f} MB"
        f" / goal {RSS_GOAL_MB} MB = {min(rss) / RSS_GOAL_MB:.2f} (scan, stored, outbox signed and"
        f" serialised: {json_bytes / 1e6:.1f} MB of JSON)"
    )
    print(
        f"{'bytes read on a rescan':<34} model bytes hashed 0 of {small_bytes}; process read()"
        f" {min(rescan_read)} B (state database and Aspose, no model file)"
    )
    print(prune_line)
    print(
        f"SUMMARY rescan_vs_find={rescan.ratio('min'):.2f} first_scan_vs_sha256sum={first.ratio('min'):.2f}"
        f" rescan_100k_vs_find={big_fig.ratio('min'):.2f} growth_100k={growth:.2f}"
        f" scan_peak_rss_mb_100k={min(scan_rss):.0f} peak_rss_mb_100k={min(rss):.0f}"
        f" peak_rss_vs_goal_100k={min(rss) / RSS_GOAL_MB:.2f} rescan_bytes_hashed=0"
        f" hash_vs_hashlib={hashing.ratio('min'):.2f}"
        f" rescan_vs_find_cpu={rescan.ratio('min', cpu=True):.2f}"
        f" first_scan_vs_sha256sum_cpu={first.ratio('min', cpu=True):.2f}"
    )
    return 0


def bench_hashing(work: Path, runs: int) -> Figure:
    """Our fd loop on one large file vs hashlib over the same bytes already in memory."""
    blob = work / "large.bin"
    chunk = os.urandom(1024 * 1024)
    with open(blob, "wb") as f:
        for _ in range(BIG_FILE_MB):
            f.write(chunk)
    data = blob.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    figure = Figure(f"hash one {BIG_FILE_MB} MiB file")
    hash_state = work / "state-hash"
    for _ in range(runs):
        w, c, _ = timed(lambda: hashlib.sha256(data).hexdigest())
        figure.floor.append(w)
        figure.floor_cpu.append(c)
        with StateDB(hash_state) as db:
            cache = HashCache(db)
            fd = os.open(blob, os.O_RDONLY)
            try:
                w, c, digest = timed(partial(cache.sha256_fd, fd))
            finally:
                os.close(fd)
        assert digest == expected
        figure.ours.append(w)
        figure.ours_cpu.append(c)
        shutil.rmtree(hash_state)
    blob.unlink()
    return figure


def bench_prune(work: Path, count: int) -> str:
    """A prune of ``count`` files: time per file and how many times /proc was read."""
    from workers import procs
    from workers.prune import Pruner
    from workers.schema import FileIdentity, PruneMode

    models, state = work / "prune-models", work / "prune-state"
    build_tree(models, count)
    looks = 0
    original = procs.open_files

    def counting(*a: object, **k: object) -> procs.OpenFiles:
        nonlocal looks
        looks += 1
        return original(*a, **k)  # type: ignore[arg-type]

    procs.open_files = counting  # type: ignore[assignment]
    try:
        with AsposeSession(models, state) as session, StateDB(state) as db:
            files = scan(session, db).files
            items = [
                FileIdentity(path=f.path, size=f.size, mtime_ns=f.mtime_ns, sha256=f.sha256) for f in files
            ]
            wall, _, outcomes = timed(
                lambda: Pruner(models, db).prune("bench-prune", items, PruneMode.QUARANTINE)
            )
    finally:
        procs.open_files = original  # type: ignore[assignment]
    done = sum(1 for o in outcomes if o.outcome == "quarantined")  # type: ignore[attr-defined]
    return (
        f"{'prune of ' + str(count) + ' files':<34} {wall * 1000:.0f} ms"
        f" ({wall / count * 1000:.2f} ms per file), {done} quarantined, /proc read {looks} time(s)"
    )


if __name__ == "__main__":
    sys.exit(main())
