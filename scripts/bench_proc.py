#!/usr/bin/env python
"""Benchmark of the agent's /proc look ("who holds model files now") at 1,000 processes x 50 files.

Two settings, both built by this script:

* **tree**: a /proc-shaped tree on disk with N process folders, each with an ``fd`` folder of
  descriptor links (libraries, sockets, pipes, and for some processes a model file), a
  ``maps`` of realistic length (a few model files mapped among the libraries) and a ``comm``.
  It isolates the look's own cost from the kernel's.
* **real** (``--real``): N real ``sleep`` processes on this machine, each holding one of the
  model files open as its standard input, and the real /proc (with every other process of
  the machine in it).

The floor, measured in the same run, is what any look must do: list each process's ``fd``
folder, read each link and read its ``maps`` once, without looking at what was read. Each
figure is printed as ours / floor / ratio, with min and median of several runs.

    python scripts/bench_proc.py            # 1,000 processes x 50 model files, tree and real
    python scripts/bench_proc.py --quick    # 200 processes, fewer runs
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LIBS = [
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libm.so.6",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/bin/python3.11",
]


def _maps_text(pid: int, mapped: list[str]) -> str:
    """About 120 lines, like a Python process: libraries (5 maps each), anonymous maps, the models."""
    lines = []
    addr = 0x55_0000_0000 + pid * 0x100_0000
    for n, lib in enumerate(LIBS * 3):
        for perm in ("r--p", "r-xp", "r--p", "rw-p", "rw-p"):
            lines.append(f"{addr:012x}-{addr + 0x1000:012x} {perm} 00000000 fe:00 {1000 + n} {lib}")
            addr += 0x1000
    for _ in range(10):
        lines.append(f"{addr:012x}-{addr + 0x21000:012x} rw-p 00000000 00:00 0 ")
        addr += 0x21000
    for n, path in enumerate(mapped):
        lines.append(f"{addr:012x}-{addr + 0x10000:012x} r--s 00000000 fe:00 {900000 + n} {path}")
        addr += 0x10000
    lines.append("7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]")
    return "\n".join(lines) + "\n"


def build_tree(base: Path, processes: int, models: list[Path]) -> tuple[Path, set[str]]:
    """The tree, and the model file names some process of it holds."""
    proc = base / "proc"
    held: set[str] = set()
    for pid in range(1, processes + 1):
        d = proc / str(pid)
        (d / "fd").mkdir(parents=True)
        (d / "comm").write_text("python3\n" if pid % 2 else "ocrd\n")
        targets = ["/dev/null", "/dev/null", "/dev/null", "socket:[1234]", "pipe:[5678]", *LIBS[:3]]
        if pid % 10 == 0:  # one in ten holds a model open
            targets.append(str(models[pid % len(models)]))
            held.add(models[pid % len(models)].name)
        for fd, target in enumerate(targets):
            os.symlink(target, d / "fd" / str(fd))
        mapped = [models[(pid + k) % len(models)] for k in range(3)] if pid % 7 == 0 else []
        held.update(m.name for m in mapped)
        (d / "maps").write_text(_maps_text(pid, [str(m) for m in mapped]))
    return proc, held


def floor(proc: str) -> int:
    """The unavoidable I/O: every fd link read and every maps read, nothing interpreted."""
    n = 0
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = f"{proc}/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            pass
        try:
            with open(f"{proc}/{pid}/maps", "rb") as maps:
                n += len(maps.read())
        except OSError:
            pass
    return n


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def report(name: str, ours: list[float], base: list[float]) -> dict[str, float]:
    o_min, o_med = min(ours), statistics.median(ours)
    f_min, f_med = min(base), statistics.median(base)
    print(
        f"{name:<34} ours min {o_min:7.1f} ms  median {o_med:7.1f} ms | floor min {f_min:7.1f} ms  "
        f"median {f_med:7.1f} ms | ratio {o_med / f_med:5.2f}"
    )
    return {"ours_ms": o_med, "floor_ms": f_med, "ratio": o_med / f_med}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="200 processes, 5 runs")
    parser.add_argument("--no-real", action="store_true", help="skip the run with real processes")
    parser.add_argument("--budget-ms", type=float, default=50.0, help="the target per look")
    args = parser.parse_args()
    if args.quick:
        args.processes, args.runs = min(args.processes, 200), 5

    from workers.schema import Store
    from workers.usage import look

    base = Path(tempfile.mkdtemp(prefix="bench-proc-"))
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        store = base / "models"
        store.mkdir()
        models = []
        for n in range(args.files):
            path = store / f"model_{n:03d}.gguf"
            path.write_bytes(b"gguf")
            models.append(path)
        roots = {Store.LLM: str(store)}

        tree_root, expected = build_tree(base, args.processes, models)
        proc = str(tree_root)
        found = look(roots, proc=proc)
        assert {p for _, p in found.holders} == expected, "the look missed or invented holders in the tree"
        print(f"tree: {args.processes} processes x {args.files} model files; {len(found.holders)} files held")
        tree = report(
            "tree (look vs fd+maps reads)",
            timed(lambda: look(roots, proc=proc), args.runs),
            timed(lambda: floor(proc), args.runs),
        )

        real: dict[str, float] = {}
        if not args.no_real and shutil.which("sleep"):
            for n in range(args.processes):
                with open(models[n % len(models)], "rb") as held:
                    sleepers.append(subprocess.Popen(["sleep", "600"], stdin=held))
            seen = look(roots)
            held = sum(len(h) for h in seen.holders.values())
            print(
                f"real: {seen.processes} processes in /proc ({args.processes} sleepers); "
                f"{len(seen.holders)} files held, {held} holders listed (at most 16 per file)"
            )
            assert len(seen.holders) == min(args.files, args.processes), "a held model was not seen"
            real = report(
                "real /proc (look vs fd+maps reads)",
                timed(lambda: look(roots), args.runs),
                timed(lambda: floor("/proc"), args.runs),
            )
    finally:
        for p in sleepers:
            p.kill()
        for p in sleepers:
            p.wait()
        shutil.rmtree(base, ignore_errors=True)

    worst = max(tree["ours_ms"], real.get("ours_ms", 0.0))
    verdict = "ok" if worst <= args.budget_ms else "over"
    print(
        f"SUMMARY processes={args.processes} files={args.files} "
        f"tree_ms={tree['ours_ms']:.1f} tree_floor_ms={tree['floor_ms']:.1f} tree_ratio={tree['ratio']:.2f} "
        + (
            f"real_ms={real['ours_ms']:.1f} real_floor_ms={real['floor_ms']:.1f} "
            f"real_ratio={real['ratio']:.2f} "
            if real
            else ""
        )
        + f"budget_ms={args.budget_ms:g} verdict={verdict}"
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
