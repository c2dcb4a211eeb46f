"""Shipping the audit trail to a SIEM: a JSON-lines file and syslog (RFC 5424).

Sinks are handlers of the :class:`~stateward.jobs.follower.AuditFollower`, so they see every
record once (at least once across restarts), in chain order, off the request path.

- ``file``: one JSON object per line, appended and flushed (``fsync`` per batch is left to the
  log shipper's file tailing, which is what Filebeat/Vector/Fluent Bit read).
- ``syslog``: RFC 5424 messages over UDP (one datagram each) or TCP (octet-counting framing,
  RFC 6587), with structured data ``[stateward@32473 ...]`` holding the fields SIEM rules
  filter on, and the whole record as JSON in the message. Severity: ``info`` for ``ok``,
  ``notice`` for ``denied``, ``warning`` for ``failed``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading

from stateward.config.sinks import FileSinkConfig, SyslogSinkConfig
from stateward.domain.audit_record import AuditRecord

#: Private enterprise number placeholder used in structured-data IDs (RFC 5424 section 7.2.2
#: requires name@<PEN>; 32473 is the documentation PEN from RFC 5612).
SD_ID = "stateward@32473"
FACILITIES = {"auth": 4, "authpriv": 10, "daemon": 3, "local0": 16, "local1": 17,
              "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22,
              "local7": 23, "user": 1}  # fmt: skip
SEVERITY = {"ok": 6, "denied": 5, "failed": 4}


def record_line(record: AuditRecord) -> str:
    return json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":"))


class FileSink:
    def __init__(self, config: FileSinkConfig) -> None:
        self.path = config.path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, record: AuditRecord) -> None:
        with self._lock:
            self._file.write(record_line(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def rfc5424(record: AuditRecord, facility: int, app_name: str, hostname: str) -> bytes:
    """One RFC 5424 message (without transport framing)."""
    pri = facility * 8 + SEVERITY.get(record.outcome, 5)
    ts = dt.datetime.fromtimestamp(record.at, dt.UTC).isoformat(timespec="microseconds")
    ts = ts.replace("+00:00", "Z")
    params = {
        "seq": str(record.seq),
        "principal": record.principal,
        "source": record.source,
        "action": record.action,
        "path": record.path or "",
        "outcome": record.outcome,
        "status": str(record.status),
        "request_id": record.request_id,
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msgid = "".join(ch for ch in record.action if "!" <= ch <= "~")[:32] or "-"
    header = f"<{pri}>1 {ts} {hostname or '-'} {app_name} {os.getpid()} {msgid} {sd} "
    return header.encode() + b"\xef\xbb\xbf" + record_line(record).encode()  # BOM: UTF-8 MSG


class SyslogSink:
    def __init__(self, config: SyslogSinkConfig) -> None:
        self.config = config
        self.facility = FACILITIES[config.facility]
        self.hostname = socket.gethostname()[:255]
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            if self.config.protocol == "udp":
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sock.connect((self.config.host, self.config.port))
            else:
                self._sock = socket.create_connection(
                    (self.config.host, self.config.port), timeout=5
                )
        return self._sock

    def __call__(self, record: AuditRecord) -> None:
        message = rfc5424(record, self.facility, self.config.app_name, self.hostname)
        with self._lock:
            try:
                sock = self._connect()
                if self.config.protocol == "udp":
                    sock.send(message[:65000])
                else:
                    sock.sendall(str(len(message)).encode() + b" " + message)
            except OSError:
                self.close()
                raise  # the follower retries this record on its next poll

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def build_sink(config: FileSinkConfig | SyslogSinkConfig) -> FileSink | SyslogSink:
    return FileSink(config) if isinstance(config, FileSinkConfig) else SyslogSink(config)
