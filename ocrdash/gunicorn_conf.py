"""gunicorn's settings for the web service: its own lines in ocrdash's log format.

    gunicorn -c python:ocrdash.gunicorn_conf ocrdash.wsgi:application --bind ... --workers 3

Without this, gunicorn writes its lines ("Booting worker", "WORKER TIMEOUT") and its access
log in formats of its own, so the web service's log mixed three formats and the access lines
carried no request id. Here both of its loggers go through the one handler of
``workers.logs`` (time, level, logger, request id; ``OCRDASH_LOG_FORMAT=json`` for JSON), and
each access line carries the id of the request it records, the one in the response's
``X-Request-ID``, so an access line leads to the request's other lines.

No Django here: gunicorn's master process reads this before any worker loads the app.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger

from workers.logs import log_context, logging_config

# The access log is on, written through the logging config below (stderr, like every line).
accesslog = "-"
# The time, the level and the request id come from the formatter; gunicorn adds what it knows:
# the client, the request line, the status, the body's size, the time taken and the agent.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# gunicorn's two loggers without handlers of their own: their records reach the root's handler.
logconfig_dict = {
    **logging_config(),
    "loggers": {"gunicorn.error": {"propagate": True}, "gunicorn.access": {"propagate": True}},
}
logger_class = "ocrdash.gunicorn_conf.RequestIdLogger"
# Python's warnings as log lines too (the workers, forked from this process, inherit it).
logging.captureWarnings(True)
# gunicorn's control socket (for its gunicornc tool) would live in $HOME/.gunicorn/: the image's
# home is not writable (a warning at every start), and two servers of one user share the path.
# Nothing uses it; compose restarts the service instead.
control_socket_disable = True


class RequestIdLogger(Logger):
    """gunicorn's logger, writing each access line inside the context of its request's id.

    The id is read from the response (ocrdash.middleware sets ``X-Request-ID``) rather than
    left to the request's log context: gunicorn logs the access line after the response was
    sent, and whether Django has ended the request's context by then depends on the worker.
    """

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), None)
        if request_id is None:
            super().access(resp, req, environ, request_time)
            return
        with log_context("request", request_id):
            super().access(resp, req, environ, request_time)
