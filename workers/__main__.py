"""Command line of the agent.

``python -m workers audit --models-dir DIR [--ocr-resources-dir DIR2]``: the Aspose tutorial's
audit for one host without any dashboard: list the models of both stores (AsposeAI's LLM folder
and the OCR engine's resources folder), quarantine the OLD ones (name starts with the prefix)
each in its own store's quarantine, free both engines.
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


def _ocr_folder(args: argparse.Namespace) -> Path | None:
    """The OCR resources folder given with --ocr-resources-dir (absolute), or None."""
    if not args.ocr_resources_dir:
        return None
    ocr_dir = Path(os.path.abspath(args.ocr_resources_dir))
    if not ocr_dir.is_dir():
        raise Refused(f"OCR resources folder does not exist or is not a folder: {ocr_dir}")
    return ocr_dir


def _freed_line(freed: bool) -> str:
    return "Aspose resources freed." if freed else "Aspose resources NOT freed."


def audit(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.inventory import file_entries, scan
    from workers.prune import prune_stores
    from workers.schema import FileIdentity, ModelDirState, Outcome, PruneMode, Store
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    try:
        in_use = in_use_check_setting()
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    ocr_dir = _ocr_folder(args)
    db = StateDB(state_dir)
    request_id = f"audit-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    with AsposeSession(models_dir, state_dir, ocr_dir) as session:
        result = scan(session, db)
        for store in result.facts.stores:
            if store.state is not ModelDirState.OK:
                return _fail(store.error)
        old = [f for f in result.files if f.path.rsplit("/", 1)[-1].startswith(args.prune_prefix)]
        items = [
            FileIdentity(path=f.path, size=f.size, mtime_ns=f.mtime_ns, sha256=f.sha256, store=f.store)
            for f in old
            if f.sha256 is not None and not f.is_symlink
        ]
        roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
        outcomes = (
            []
            if args.dry_run or not items
            else prune_stores(roots, db, request_id, items, PruneMode.QUARANTINE, in_use=in_use)
        )
    old_keys = {(f.store, f.path) for f in old}
    reclaimed = sum(o.bytes_reclaimed for o in outcomes)

    def status(f: Any) -> str:
        return "OLD" if (f.store, f.path) in old_keys else "CURRENT"

    document: dict[str, Any] = {
        "model_dir": str(models_dir),
        "ocr_resources_dir": str(ocr_dir) if ocr_dir else None,
        "request_id": None if args.dry_run else request_id,
        "dry_run": args.dry_run,
        "stores": [s.model_dump(mode="json") for s in result.facts.stores],
        "files": [{**f.model_dump(mode="json"), "status": status(f)} for f in file_entries(result.files)],
        "outcomes": [o.model_dump(mode="json") for o in outcomes],
        "bytes_reclaimed": reclaimed,
        "freed": session.freed,
    }
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        titles = {Store.LLM: "Models in", Store.OCR: "OCR resources in"}
        for facts in result.facts.stores:
            print(f"{titles[facts.store]} {facts.root}  (atime: {facts.atime_mode.value})")
            listed = [f for f in result.files if f.store is facts.store]
            for f in listed:
                held = ", ".join(h.label() for h in f.open_by)
                notes = ", ".join(
                    n
                    for n, on in (
                        ("loaded by Aspose", f.known_to_aspose),
                        ("symlink", f.is_symlink),
                        (f"in use by {held}", bool(held)),
                    )
                    if on
                )
                line = f"  {status(f):<8} {_human_size(f.size):>10}  {f.path}"
                print(line + (f"  ({notes})" if notes else ""))
            if not listed:
                print("  (no files)")
        if args.dry_run:
            print(f"Dry run: {len(items)} OLD file(s) would be quarantined.")
        for o in outcomes:
            where = "" if o.store is Store.LLM else "[ocr] "
            print(f"  {o.outcome.value:<16} {where}{o.path}" + (f"  {o.detail}" if o.detail else ""))
        if outcomes:
            print(f"Reclaimed {_human_size(reclaimed)}; restore with request id {request_id}:")
            folder = shlex.quote(str(models_dir))
            extra = f" --ocr-resources-dir {shlex.quote(str(ocr_dir))}" if ocr_dir else ""
            print(f"  python -m workers restore --models-dir {folder}{extra} --request-id {request_id}")
        print(_freed_line(session.freed))
    failed = [o for o in outcomes if o.outcome is Outcome.ERROR]
    if failed:
        print(f"error: {len(failed)} file(s) could not be quarantined", file=sys.stderr)
        return 1
    return 0 if session.freed else 1


def restore(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.prune import QUARANTINE_DIR, check_request_id, restore_stores
    from workers.schema import Outcome, Store
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    ocr_dir = _ocr_folder(args)
    try:
        prune_id = check_request_id(args.request_id)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    # Checked here, not left to restore(): it reads a missing folder as "nothing quarantined",
    # which for a mistyped id would print an empty success.
    roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
    if not any(root is not None and (root / QUARANTINE_DIR / prune_id).is_dir() for root in roots.values()):
        where = " or ".join(str(r / QUARANTINE_DIR) for r in roots.values() if r is not None)
        raise Refused(f"unknown request id {prune_id}: nothing of it is in {where}")
    # Each run is its own restore request, so a file put back, pruned again and restored
    # again is not answered from the first run's record.
    restore_id = f"restore-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"

    with AsposeSession(models_dir, state_dir, ocr_dir) as session:
        outcomes = restore_stores(roots, StateDB(state_dir), restore_id, prune_id)
    restored = [o for o in outcomes if o.outcome is Outcome.RESTORED]

    if args.json:
        document = {
            "model_dir": str(models_dir),
            "ocr_resources_dir": str(ocr_dir) if ocr_dir else None,
            "request_id": prune_id,
            "restore_id": restore_id,
            "outcomes": [o.model_dump(mode="json") for o in outcomes],
            "restored": len(restored),
            "freed": session.freed,
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"Restoring request {prune_id} in {models_dir}" + (f" and {ocr_dir}" if ocr_dir else ""))
        for o in outcomes:
            where = "" if o.store is Store.LLM else "[ocr] "
            print(f"  {o.outcome.value:<16} {where}{o.path}" + (f"  {o.detail}" if o.detail else ""))
        print(f"Restored {len(restored)} of {len(outcomes)} file(s).")
        print(_freed_line(session.freed))
    if not outcomes:
        return _fail(f"nothing left to restore for request id {prune_id}", 1)
    if len(restored) < len(outcomes):
        return _fail(f"{len(outcomes) - len(restored)} file(s) were not restored", 1)
    return 0 if session.freed else 1


def purge(args: argparse.Namespace) -> int:
    from workers.aspose_backend import AsposeSession
    from workers.prune import purge_stores
    from workers.schema import Store
    from workers.state import StateDB

    models_dir, state_dir = _folders(args)
    ocr_dir = _ocr_folder(args)
    if args.older_than_days < 0:
        raise Refused(f"--older-than-days must be 0 or more, not {args.older_than_days:g}")

    with AsposeSession(models_dir, state_dir, ocr_dir) as session:
        roots = {Store.LLM: models_dir, Store.OCR: ocr_dir}
        done = purge_stores(roots, StateDB(state_dir), args.older_than_days)
    purged, size = [p.request_id for p in done], sum(p.bytes_purged for p in done)

    if args.json:
        document = {
            "model_dir": str(models_dir),
            "ocr_resources_dir": str(ocr_dir) if ocr_dir else None,
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
        "--quiet",  # no startup banner: every line the agent writes is a log line (workers/logs.py)
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
    p_audit.add_argument(
        "--ocr-resources-dir", help="the OCR engine's resources folder (aspose.ocr.Resources, .OCR files)"
    )
    p_audit.add_argument("--json", action="store_true", help="print one JSON document")
    p_audit.add_argument("--state-dir", help="the agent's state folder (hash cache, records)")
    p_audit.set_defaults(func=audit)
    p_restore = sub.add_parser("restore", help="move back the files one audit quarantined, free Aspose")
    p_restore.add_argument("--models-dir", required=True, help="the model folder the audit ran on")
    p_restore.add_argument("--request-id", required=True, help="the id the audit printed")
    p_restore.add_argument(
        "--ocr-resources-dir", help="the OCR engine's resources folder (aspose.ocr.Resources, .OCR files)"
    )
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
    p_purge.add_argument(
        "--ocr-resources-dir", help="the OCR engine's resources folder (aspose.ocr.Resources, .OCR files)"
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
