"""One log format for every ocrdash process: web, ingest worker, scheduler and agent.

Each line carries the time (UTC, ISO 8601), the level, the logger and the id of the request or
task it belongs to (``-`` outside of one), so the lines of one report can be followed from the
web process to the ingest worker. ``OCRDASH_LOG_FORMAT=json`` writes one JSON object per line
instead, for a log collector.

Every line is newline-safe: a CR, LF or other control character inside a message (a file
name, a reason or a host name that came over the broker) is written as an escape such as
``\\n``, so nothing a host sends can forge a log line of its own. A traceback is one line too.

No Django here: the agent uses this module as it is, the dashboard through its LOGGING setting.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

FORMAT_VARIABLE = "OCRDASH_LOG_FORMAT"
LEVEL_VARIABLE = "OCRDASH_LOG_LEVEL"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(context_id)s %(message)s"

# "request=<id>" in the web process, "task=<id>" in a worker; "-" outside of both.
_context: ContextVar[str] = ContextVar("ocrdash_log_context", default="-")

# Control characters (C0 and DEL) as escapes: CR and LF first of all. Tabs stay readable.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r"})


def newline_safe(text: str) -> str:
    """``text`` on one line: control characters written as escapes."""
    return text.translate(_ESCAPES)


@contextmanager
def log_context(kind: str, ident: str) -> Iterator[None]:
    """Lines logged inside carry ``kind=ident`` (a request's or a task's id)."""
    token = _context.set(f"{kind}={newline_safe(ident)[:64]}")
    try:
        yield
    finally:
        _context.reset(token)


def set_context(kind: str, ident: str) -> object:
    """As log_context, for code that starts and ends the context in two places (Celery's
    task_prerun and task_postrun signals); give the returned token to reset_context."""
    return _context.set(f"{kind}={newline_safe(ident)[:64]}")


def reset_context(token: object) -> None:
    _context.reset(token)  # type: ignore[arg-type]


def set_idle() -> None:
    """Outside of any request or task again (a web thread between two requests)."""
    _context.set("-")


def current_context() -> str:
    return _context.get()


class ContextFilter(logging.Filter):
    """Puts the current request or task id on every record (``%(context_id)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context_id = _context.get()
        return True


def exception_summary(exc: BaseException, depth: int = 3) -> str:
    """``Type: first line`` of ``exc`` and of what caused it (``<-`` between them), no traceback."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < depth:
        text = str(current).strip().splitlines()
        part = f"{type(current).__name__}: {text[0]}" if text else type(current).__name__
        if not parts or part != parts[-1]:  # a wrapper repeating its cause (Django's db errors)
            parts.append(part)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


class SummaryOnly(logging.Filter):
    """A record's traceback replaced by the exception's one-line summary (exception_summary).

    For loggers whose exceptions come from outside, where the traceback is the library's own
    path to a refused connection: django-health-check logs every failed check with one, and a
    load balancer asking every few seconds turned a database outage into walls of frames.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {exception_summary(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class LineFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO models_admin.ingest task=4f2c... message``, one line."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt, datefmt, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "context_id"):
            record.context_id = _context.get()
        return newline_safe(super().format(record))


class JsonFormatter(LineFormatter):
    """One JSON object per line: time, level, logger, context, message (and exc, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "context": getattr(record, "context_id", None) or _context.get(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes every control character: the line cannot be split.
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter_class(environ: Mapping[str, str] | None = None) -> str:
    """The dotted formatter class that the environment asks for (text unless json)."""
    wanted = (environ if environ is not None else os.environ).get(FORMAT_VARIABLE, "text").strip().lower()
    if wanted not in ("text", "json"):
        raise ValueError(f"{FORMAT_VARIABLE} must be text or json, not {wanted!r}")
    return f"workers.logs.{'JsonFormatter' if wanted == 'json' else 'LineFormatter'}"


def logging_config(level: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A dictConfig for one process: everything through one stderr handler in our format."""
    env = environ if environ is not None else os.environ
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "workers.logs.ContextFilter"}},
        "formatters": {"ocrdash": {"()": formatter_class(env)}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "ocrdash",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": (level or env.get(LEVEL_VARIABLE) or "INFO").upper()},
    }


def install_celery_hooks(configure_logging: Callable[[], None]) -> None:
    """Celery: our logging instead of its own, and the task id on each line of a task.

    A receiver of ``setup_logging`` replaces Celery's logging setup (worker and beat alike).
    """
    from celery import signals

    def ours(**kwargs: Any) -> None:
        configure_logging()
        logging.captureWarnings(True)

    tokens: dict[str, object] = {}

    def task_started(task_id: str | None = None, **kwargs: Any) -> None:
        if task_id:
            tokens[task_id] = set_context("task", task_id)

    def task_ended(task_id: str | None = None, **kwargs: Any) -> None:
        token = tokens.pop(task_id, None) if task_id else None
        if token is not None:
            reset_context(token)

    signals.setup_logging.connect(ours, weak=False)
    signals.task_prerun.connect(task_started, weak=False)
    signals.task_postrun.connect(task_ended, weak=False)


def configure(level: str | None = None) -> None:
    """Configure this (non-Django) process's logging: the agent. Python's warnings (Celery's
    about running as root, a deprecation) become log lines too, not loose lines on stderr."""
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)
