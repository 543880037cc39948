"""Command line of the agent.

``python -m workers audit --models-dir DIR``: the Aspose tutorial's audit for one host without
any dashboard: list the models, quarantine the OLD ones (name starts with the prefix), free.
``python -m workers restore --models-dir DIR --request-id ID``: move back what one audit
quarantined. ``python -m workers purge --models-dir DIR``: delete quarantined files for good
once they are older than the retention.
``python -m workers agent``: run this host's Celery worker on its own queue.

Each of audit, restore and purge opens an Aspose session around its work and frees it at the
end, as the agent does, and exits non-zero with one line on stderr when it cannot do its job.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from workers.config import (
    DEFAULT_QUARANTINE_DAYS,
    ConfigError,
    default_state_dir,
    in_use_check_setting,
    load_config,
)


class Refused(Exception):
    """The command cannot do its job; main() prints the reason as one line and exits ``status``."""

    def __init__(self, reason: str, status: int = 2) -> None:
        super().__init__(reason)
        self.status = status


def _fail(reason: str, status: int = 2) -> int:
    print(f"error: {reason}", file=sys.stderr)
    return status


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """(model folder, state folder), absolute."""
    models_dir = Path(os.path.abspath(args.models_dir))
    if not models_dir.is_dir():
        raise Refused(f"model folder does not exist or is not a folder: {models_dir}")
    state_dir = Path(os.path.abspath(args.state_dir)) if args.state_dir else default_state_dir(os.environ)
    return models_dir, state_dir


def _freed_line(freed: bool) -> str:
    return "Aspose resources freed." if freed else "Aspose resources NOT freed."


def audit(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.inventory import scan
    from workers.prune import Pruner
    from workers.schema import FileIdentity, ModelDirState, Outcome, PruneMode
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    try:
        in_use = in_use_check_setting()
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    db = StateDB(state_dir)
    request_id = f"audit-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    with AsposeSession(models_dir, state_dir) as session:
        result = scan(session, db)
        if result.facts.model_dir_state is not ModelDirState.OK:
            return _fail(result.facts.model_dir_error)
        old = [f for f in result.files if f.path.rsplit("/", 1)[-1].startswith(args.prune_prefix)]
        items = [
            FileIdentity(path=f.path, size=f.size, mtime_ns=f.mtime_ns, sha256=f.sha256)
            for f in old
            if f.sha256 is not None and not f.is_symlink
        ]
        outcomes = (
            []
            if args.dry_run or not items
            else Pruner(models_dir, db, in_use=in_use).prune(request_id, items, PruneMode.QUARANTINE)
        )
    old_paths = {f.path for f in old}
    reclaimed = sum(o.bytes_reclaimed for o in outcomes)

    document: dict[str, Any] = {
        "model_dir": str(models_dir),
        "request_id": None if args.dry_run else request_id,
        "dry_run": args.dry_run,
        "files": [
            {**f._asdict(), "status": "OLD" if f.path in old_paths else "CURRENT"} for f in result.files
        ],
        "outcomes": [o.model_dump(mode="json") for o in outcomes],
        "bytes_reclaimed": reclaimed,
        "freed": session.freed,
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(f"Models in {models_dir}")
        for f in result.files:
            status = "OLD" if f.path in old_paths else "CURRENT"
            notes = ", ".join(
                n for n, on in (("loaded by Aspose", f.known_to_aspose), ("symlink", f.is_symlink)) if on
            )
            print(f"  {status:<8} {_human_size(f.size):>10}  {f.path}" + (f"  ({notes})" if notes else ""))
        if not result.files:
            print("  (no files)")
        if args.dry_run:
            print(f"Dry run: {len(items)} OLD file(s) would be quarantined.")
        for o in outcomes:
            print(f"  {o.outcome.value:<16} {o.path}" + (f"  {o.detail}" if o.detail else ""))
        if outcomes:
            print(f"Reclaimed {_human_size(reclaimed)}; restore with request id {request_id}:")
            folder = shlex.quote(str(models_dir))
            print(f"  python -m workers restore --models-dir {folder} --request-id {request_id}")
        print(_freed_line(session.freed))
    failed = [o for o in outcomes if o.outcome is Outcome.ERROR]
    if failed:
        print(f"error: {len(failed)} file(s) could not be quarantined", file=sys.stderr)
        return 1
    return 0 if session.freed else 1


def restore(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.prune import QUARANTINE_DIR, check_request_id
    from workers.prune import restore as restore_files
    from workers.schema import Outcome
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    try:
        prune_id = check_request_id(args.request_id)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    # Checked here, not left to restore(): it reads a missing folder as "nothing quarantined",
    # which for a mistyped id would print an empty success.
    if not (models_dir / QUARANTINE_DIR / prune_id).is_dir():
        raise Refused(f"unknown request id {prune_id}: nothing of it is in {models_dir / QUARANTINE_DIR}")
    # Each run is its own restore request, so a file put back, pruned again and restored
    # again is not answered from the first run's record.
    restore_id = f"restore-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    with AsposeSession(models_dir, state_dir) as session:
        outcomes = restore_files(session.get_local_path(), StateDB(state_dir), restore_id, prune_id)
    restored = [o for o in outcomes if o.outcome is Outcome.RESTORED]

    if args.json:
        document = {
            "model_dir": str(models_dir),
            "request_id": prune_id,
            "restore_id": restore_id,
            "outcomes": [o.model_dump(mode="json") for o in outcomes],
            "restored": len(restored),
            "freed": session.freed,
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"Restoring request {prune_id} in {models_dir}")
        for o in outcomes:
            print(f"  {o.outcome.value:<16} {o.path}" + (f"  {o.detail}" if o.detail else ""))
        print(f"Restored {len(restored)} of {len(outcomes)} file(s).")
        print(_freed_line(session.freed))
    if not outcomes:
        return _fail(f"nothing left to restore for request id {prune_id}", 1)
    if len(restored) < len(outcomes):
        return _fail(f"{len(outcomes) - len(restored)} file(s) were not restored", 1)
    return 0 if session.freed else 1


def purge(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.prune import purge as purge_quarantine
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    if args.older_than_days < 0:
        raise Refused(f"--older-than-days must be 0 or more, not {args.older_than_days:g}")

    with AsposeSession(models_dir, state_dir) as session:
        purged, size = purge_quarantine(session.get_local_path(), StateDB(state_dir), args.older_than_days)

    if args.json:
        document = {
            "model_dir": str(models_dir),
            "older_than_days": args.older_than_days,
            "purged_requests": purged,
            "bytes_purged": size,
            "freed": session.freed,
        }
        print(json.dumps(document, indent=2))
    else:
        if purged:
            print(f"Purged the quarantine of {len(purged)} request(s), {_human_size(size)}:")
            for request_id in purged:
                print(f"  {request_id}")
        else:
            print(f"Nothing in quarantine older than {args.older_than_days:g} day(s) in {models_dir}.")
        print(_freed_line(session.freed))
    return 0 if session.freed else 1


def _days(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None


def agent(args: argparse.Namespace) -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        return _fail(str(exc))
    if args.print_fingerprint:
        from workers.trust import AgentTrust

        try:
            trust = AgentTrust.load(config)  # makes the key on first use, as the worker would
        except ConfigError as exc:
            return _fail(str(exc))
        print(trust.fingerprint)
        return 0
    from workers.celery_app import create_app
    from workers.logs import configure, install_celery_hooks

    install_celery_hooks(lambda: configure(args.loglevel))
    try:
        app = create_app(config)
    except ConfigError as exc:
        return _fail(str(exc))
    argv = [
        "worker",
        "--queues",
        config.queue,
        "--hostname",
        f"agent@{config.host_name}",
        "--concurrency",
        "1",
        "--loglevel",
        args.loglevel,
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_audit = sub.add_parser("audit", help="list the models, quarantine the OLD ones, free Aspose")
    p_audit.add_argument("--models-dir", required=True, help="the model folder to audit")
    p_audit.add_argument("--prune-prefix", default="old_", help="file names starting with this are OLD")
    p_audit.add_argument("--dry-run", action="store_true", help="list only; move nothing")
    p_audit.add_argument("--json", action="store_true", help="print one JSON document")
    p_audit.add_argument("--state-dir", help="the agent's state folder (hash cache, records)")
    p_audit.set_defaults(func=audit)
    p_restore = sub.add_parser("restore", help="move back the files one audit quarantined, free Aspose")
    p_restore.add_argument("--models-dir", required=True, help="the model folder the audit ran on")
    p_restore.add_argument("--request-id", required=True, help="the id the audit printed")
    p_restore.add_argument("--json", action="store_true", help="print one JSON document")
    p_restore.add_argument("--state-dir", help="the agent's state folder (hash cache, records)")
    p_restore.set_defaults(func=restore)
    p_purge = sub.add_parser("purge", help="delete quarantined files older than the retention, free Aspose")
    p_purge.add_argument("--models-dir", required=True, help="the model folder whose quarantine to purge")
    p_purge.add_argument(
        "--older-than-days",
        type=_days,
        default=DEFAULT_QUARANTINE_DAYS,
        metavar="N",
        help=f"purge what was quarantined at least N days ago (default {DEFAULT_QUARANTINE_DAYS:g}; 0: all)",
    )
    p_purge.add_argument("--json", action="store_true", help="print one JSON document")
    p_purge.add_argument("--state-dir", help="the agent's state folder (hash cache, records)")
    p_purge.set_defaults(func=purge)
    p_agent = sub.add_parser("agent", help="run this host's Celery worker on its queue")
    p_agent.add_argument("--loglevel", default="INFO")
    p_agent.add_argument(
        "--print-fingerprint",
        action="store_true",
        help="print this host's key fingerprint (compare it with the dashboard's at enrollment) and exit",
    )
    p_agent.set_defaults(func=agent)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Refused as exc:
        return _fail(str(exc), exc.status)


if __name__ == "__main__":
    sys.exit(main())
