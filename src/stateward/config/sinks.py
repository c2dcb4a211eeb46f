"""The ``[[audit_sinks]]`` section: where the audit trail is shipped (``jobs/sinks.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class FileSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["file"] = "file"
    path: Path


class SyslogSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["syslog"] = "syslog"
    host: str = "127.0.0.1"
    port: int = Field(default=514, ge=1, le=65535)
    protocol: Literal["udp", "tcp"] = "udp"
    facility: Literal[
        "auth", "authpriv", "daemon", "user",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ] = "authpriv"  # fmt: skip
    app_name: str = Field(default="stateward", pattern=r"^[!-~]{1,48}$")


SinkConfig = Annotated[FileSinkConfig | SyslogSinkConfig, Field(discriminator="type")]
