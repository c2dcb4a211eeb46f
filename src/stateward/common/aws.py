"""One way to build boto3 clients (AWS KMS key provider, S3 blob store).

The usual AWS credential chain (optionally a named profile), the configured region and
endpoint, separate connect/read timeouts, and botocore's "standard" retry mode with a total
attempt count (botocore's own ``max_attempts`` would count retries only).
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
import botocore.config  # type: ignore[import-untyped, unused-ignore]


def boto_client(
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
    profile: str | None = None,
) -> Any:
    """A client for ``service``; raises botocore's BotoCoreError for the caller to map."""
    config = botocore.config.Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        user_agent_extra="stateward",
    )
    session = boto3.session.Session(profile_name=profile)
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
