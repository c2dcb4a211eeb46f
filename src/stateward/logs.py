"""Log formatting (``log_format = "text" | "json"``) and per-request IDs.

Every HTTP request gets an ID: the client's ``X-Request-ID`` when it is 1-64 characters of
``A-Z a-z 0-9 . _ -``, otherwise a fresh uuid4 hex. It is kept in a context variable for the
request's duration (worker threads started with ``run_in_threadpool`` inherit it), added to
every log line written meanwhile -- uvicorn's access line included -- and echoed in the
``X-Request-ID`` response header (``http/requestid.py``). :func:`current_request_id` gives it
to other code (the audit trail).

Log lines never carry state content: messages name paths, serials, lineages, lock IDs and
holders only. Keep it that way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import re
import uuid
from contextvars import ContextVar, Token
from typing import Any, Literal

LogFormat = Literal["text", "json"]

HEADER = b"x-request-id"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

_request_id: ContextVar[str | None] = ContextVar("stateward_request_id", default=None)


def set_request_id(rid: str) -> Token[str | None]:
    """Make ``rid`` the current request's ID (reset with :func:`reset_request_id`)."""
    return _request_id.set(rid)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    """The ID of the HTTP request being handled, or None outside a request."""
    return _request_id.get()


def request_id_for(incoming: str | None) -> str:
    """The client's ID when well-formed, else a new one."""
    if incoming is not None and REQUEST_ID_RE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


# -- formatters ----------------------------------------------------------------------------------

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}  # color_message: uvicorn's duplicate
)
#: uvicorn's access record: ``'%s - "%s %s HTTP/%s" %d'`` with these arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, ``request_id`` (null
    outside a request), then any ``extra=`` fields; ``exc`` holds a traceback. uvicorn's access
    lines also get ``client``, ``method``, ``path`` (with the query string), ``http_version``
    and ``status``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": current_request_id(),
        }
        if (
            record.name == "uvicorn.access"
            and isinstance(record.args, tuple)
            and len(record.args) == len(_ACCESS_FIELDS)
        ):
            out.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        for key, value in vars(record).items():
            if key not in _STANDARD:
                out.setdefault(key, value)  # an extra= never replaces a base field
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)  # ASCII-only: safe on any stderr encoding


class TextFormatter(logging.Formatter):
    """stateward's historical layout (``INFO:     message``, as uvicorn's for INFO) for every
    logger, plus `` request_id=…`` on lines written while a request is handled."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname}:     {record.getMessage()}"
        rid = current_request_id()
        if rid is not None:
            line += f" request_id={rid}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server; also uvicorn's ``log_config``, so its
    error and access logs use the same formatter as stateward's own (one stream: stderr)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stateward": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "stateward",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": name},
        "loggers": {
            # uvicorn's own config gives these handlers and propagate=False; here they
            # propagate to the root handler instead.
            "uvicorn": {"handlers": [], "level": name, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": name, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": name, "propagate": True},
        },
    }


def configure(log_format: LogFormat, level: str) -> dict[str, Any]:
    """Configure logging now and return the config (for uvicorn's ``log_config``)."""
    config = logging_config(log_format, level)
    try:
        logging.config.dictConfig(config)
    except ValueError:
        raise ValueError(f"unknown log_level {level!r}") from None
    return config
