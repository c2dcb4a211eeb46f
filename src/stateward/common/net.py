"""Checks on addresses and URLs that configuration points at (key services, buckets, identity
providers, webhooks): secrets travel to them, so plain HTTP is allowed only on loopback."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (names other than ``localhost`` are not
    resolved: a DNS answer is no proof)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_service_url(value: str, *, field: str) -> str:
    """An ``http(s)://host[:port][/prefix]`` URL; plain HTTP only to a loopback address."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{field} must be an https:// URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{field} must use https:// (plain http only to a loopback address)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{field} must not contain credentials, a query or a fragment")
    try:
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{field} has an invalid port") from exc
    return value.rstrip("/")


def check_url(url: str) -> str:
    """https only; plain http is allowed for loopback so tests can serve keys locally."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{url!r} must use https (plain http is only allowed for loopback)")
    if parts.username or parts.password or parts.fragment:
        raise ValueError(f"{url!r} must not contain credentials or a fragment")
    return url
