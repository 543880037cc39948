#!/usr/bin/env python
"""Benchmark of the agent's /proc look ("who holds model files now") at 1,000 processes x 50 files.

Two settings, both built by this script:

* **tree**: a /proc-shaped tree on disk with N process folders, each with an ``fd`` folder of
  descriptor links (libraries, sockets, pipes, and for some processes a model file), a
  ``maps`` of realistic length (a few model files mapped among the libraries) and a ``comm``.
  It isolates the cost of the full look (every process read; the path for a store with many
  more files than processes, or a look without a file list) from the kernel's. Its "held"
  files are held by nobody in the kernel, so the lease test does not apply there.
* **real**: the real /proc (with every other process of the machine in it), first with no
  model held (the kernel's lease test answers alone), then with N real ``sleep`` processes,
  each holding one of the model files open as its standard input: the inventory's look
  (lease test per file, then /proc only until each held file has a holder named; every named
  holder is checked to really hold it) and the full look beside it.

The floor, measured in the same run, is the full look's unavoidable I/O: list each process's
``fd`` folder, read each link and read its ``maps`` once, without looking at what was read.
Each figure is printed as ours / floor / ratio, with min and median of several runs; the
budget (50 ms) applies to the inventory's look and to the tree.

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
        f"{name:<58} ours min {o_min:7.1f} ms  median {o_med:7.1f} ms | floor min {f_min:7.1f} ms  "
        f"median {f_med:7.1f} ms | ratio {o_med / f_med:5.2f}"
    )
    return {"ours_ms": o_med, "ours_min_ms": o_min, "floor_ms": f_med, "ratio": o_med / f_med}


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
        # A tree's "held" files are held by nobody in the kernel: the tree measures the full
        # look (no file list), the path taken for stores with many more files than processes.
        tree = report(
            "tree, full look (vs fd+maps reads)",
            timed(lambda: look(roots, proc=proc), args.runs),
            timed(lambda: floor(proc), args.runs),
        )

        real: dict[str, float] = {}
        idle: dict[str, float] = {}
        full_look: dict[str, float] = {}
        if not args.no_real and shutil.which("sleep"):
            names = {Store.LLM: [m.name for m in models]}
            # Nobody holds a model yet: the kernel's lease test alone answers.
            quiet = look(roots, files=names)
            assert quiet.method == "lease" and not quiet.holders, "a model nobody holds was reported held"
            idle = report(
                "real, no model held (lease only)",
                timed(lambda: look(roots, files=names), args.runs),
                timed(lambda: floor("/proc"), args.runs),
            )
            for n in range(args.processes):
                with open(models[n % len(models)], "rb") as held:
                    sleepers.append(subprocess.Popen(["sleep", "600"], stdin=held))
            seen = look(roots, files=names)
            print(
                f"real: {len(os.listdir('/proc'))} entries in /proc ({args.processes} sleepers); "
                f"{len(seen.holders)} files held, {seen.processes} processes read ({seen.method})"
            )
            assert len(seen.holders) == min(args.files, args.processes), "a held model was not named"
            for (_, name), holders in seen.holders.items():  # every named holder really holds it
                for h in holders:
                    assert os.readlink(f"/proc/{h.pid}/fd/0") == str(store / name), (name, h)
            full = look(roots)
            assert set(full.holders) == set(seen.holders), "the full look and the lease-first one disagree"
            real = report(
                "real, every model held (lease, then /proc until each held file is named)",
                timed(lambda: look(roots, files=names), args.runs),
                timed(lambda: floor("/proc"), args.runs),
            )
            full_look = report(
                "real, full look (no file list)",
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
            f"real_ms={real['ours_ms']:.1f} real_min_ms={real['ours_min_ms']:.1f} "
            f"real_floor_ms={real['floor_ms']:.1f} real_ratio={real['ratio']:.2f} "
            f"real_idle_ms={idle['ours_ms']:.1f} real_full_look_ms={full_look['ours_ms']:.1f} "
            if real
            else ""
        )
        + f"budget_ms={args.budget_ms:g} verdict={verdict}"
    )
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
