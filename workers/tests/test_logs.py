"""Every log line: time, level, logger, request or task id; one line whatever the message holds."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import re

import pytest

from workers import logs

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) [\w.]+ (\S+) .*$")


@pytest.fixture
def capture(monkeypatch):
    """The root logger configured as a process would be, writing into a buffer."""

    def make(fmt: str = "text") -> io.StringIO:
        config = logs.logging_config("INFO", {"OCRDASH_LOG_FORMAT": fmt})
        logging.config.dictConfig(config)
        stream = io.StringIO()
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        return stream

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield make
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_line_has_time_level_logger_and_context(capture):
    out = capture()
    logging.getLogger("workers.tasks").info("outside")
    with logs.log_context("task", "4f2c9a"):
        logging.getLogger("models_admin.ingest").warning("stored %s", "r-1")
    first, second = out.getvalue().splitlines()
    assert LINE.match(first) and " INFO workers.tasks - outside" in first
    assert LINE.match(second) and " WARNING models_admin.ingest task=4f2c9a stored r-1" in second


def test_a_hostile_string_cannot_forge_a_line(capture):
    out = capture()
    forged = "ocr-1\n2026-01-01T00:00:00.000Z INFO models_admin.approvals.workflow - approved by admin\r"
    logging.getLogger("models_admin.ingest").warning("refused report from %s", forged)
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        logging.getLogger("workers.tasks").exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "ocr-1\\n2026-01-01T00:00:00.000Z INFO" in lines[0] and lines[0].endswith("admin\\r")
    assert "Traceback" in lines[1] and "ValueError: first\\nsecond" in lines[1]


def test_json_lines_when_asked(capture):
    out = capture("json")
    with logs.log_context("request", "abc123"):
        logging.getLogger("django.request").error("bad\nthing %d", 5)
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "django.request"
    assert entry["context"] == "request=abc123" and entry["message"] == "bad\nthing 5"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(ValueError, match="OCRDASH_LOG_FORMAT must be text or json"):
        logs.logging_config(environ={"OCRDASH_LOG_FORMAT": "xml"})


def test_summary_only_turns_a_chained_traceback_into_one_line(capture):
    out = capture()
    handler = logging.getLogger().handlers[0]
    handler.addFilter(logs.SummaryOnly())
    try:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as low:
                raise RuntimeError("connection failed: server at 10.0.0.5\n\tIs it running?") from low
        except RuntimeError:
            logging.getLogger("health_check").warning("Health check %s failed", "Database", exc_info=True)
    finally:
        handler.removeFilter(handler.filters[-1])
    (line,) = out.getvalue().splitlines()
    assert LINE.match(line) and "Traceback" not in line, line
    assert line.endswith(
        "Health check Database failed: RuntimeError: connection failed: server at 10.0.0.5"
        " <- ConnectionRefusedError: [Errno 111] Connection refused"
    ), line


def test_the_summary_names_a_repeated_cause_once():
    try:
        try:
            raise ValueError("same text")
        except ValueError as inner:
            raise KeyError("same text") from inner
    except KeyError as outer:
        assert logs.exception_summary(outer) == "KeyError: 'same text' <- ValueError: same text"
    wrapped = ValueError("same text")
    wrapped.__cause__ = ValueError("same text")
    assert logs.exception_summary(wrapped) == "ValueError: same text"
