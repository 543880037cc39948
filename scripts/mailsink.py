#!/usr/bin/env python
"""A local SMTP server that keeps every mail it is sent in a log: the demo's mail sink.

    python scripts/mailsink.py --port 8025 --log var/demo/mail.log

Nothing is delivered anywhere. Each mail is appended to the log as a readable block (one
``MAIL`` header line with the time, recipients and subject, then the body), so the demo can
print what it caught and a person can read the whole message.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class LogHandler:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        block = f"MAIL {stamp} to {', '.join(envelope.rcpt_tos)}: {message['Subject']}\n{text.rstrip()}\n\n"
        with self.lock, self.log.open("a", encoding="utf-8") as out:
            out.write(block)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--log", required=True, help="file the caught mails are appended to")
    args = parser.parse_args(argv)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    controller = Controller(LogHandler(log), hostname=args.host, port=args.port)
    controller.start()
    print(f"mail sink listening on {args.host}:{args.port}, writing to {log}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
