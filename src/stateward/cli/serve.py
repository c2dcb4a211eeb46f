"""``stateward serve``."""

from __future__ import annotations

import logging
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import click

from stateward.cli.context import CliContext, pass_ctx
from stateward.domain.errors import ServiceError


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    help="Bind address. Non-loopback needs --tls-cert/--tls-key or a declared trusted proxy.",
)
@click.option("--port", type=int)
@click.option("--max-body-bytes", type=int, help="Largest accepted state body.")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve HTTPS with this certificate (PEM, chain allowed); needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Private key (PEM)."
)
@click.option(
    "--tls-client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Require client certificates signed by this CA (mutual TLS).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines for people (text) or one JSON object per line (json).",
)
@pass_ctx
def serve(
    obj: CliContext,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    max_body_bytes: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    log_format: str | None,
) -> None:
    """Run the state server."""
    import uvicorn

    from stateward.gate.build import open_gate, prepare_to_serve
    from stateward.http.app import create_app
    from stateward.http.tls import PeerCertH11Protocol, TlsConfig
    from stateward.jobs.webhook import WebhookConfigError, load_secret
    from stateward.logs import configure as configure_logging

    settings = obj.settings(
        data_dir=data_dir or obj.flags.get("data_dir"),
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        log_format=log_format,
    )
    # Logging first, so start-up messages are formatted too (docs/observability.md).
    try:
        log_config = configure_logging(settings.log_format, settings.log_level)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        gate = open_gate(settings)
    except ServiceError as exc:  # no keys or no database: do not serve
        raise click.ClickException(str(exc)) from None
    for hook in settings.alert_webhooks:  # a webhook secret that cannot be loaded: neither
        try:
            load_secret(hook, os.environ)
        except WebhookConfigError as exc:
            raise click.ClickException(str(exc)) from None
    # A damaged or exposed token key, keys that are not the shared store's, or a blob store
    # that cannot be reached stop the server before it accepts a request.
    try:
        start = prepare_to_serve(gate)
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    for where in start.keys_inside_data_dir:
        _notice(
            settings.log_format,
            logging.WARNING,
            f"stateward: WARNING: key provider {where} keeps its key inside the data directory; "
            "a copy of the directory can decrypt every state. Configure a key file elsewhere, "
            "a passphrase or a KMS (docs/encryption.md).",
        )
    if start.initial_admin is not None:
        _notice(
            settings.log_format,
            logging.WARNING,
            "stateward: first start, created the token 'initial-admin' (role admin). It is "
            "shown only now: store it, create narrower tokens (stateward token create), "
            "then revoke it (stateward token revoke initial-admin).",
        )
        click.echo(str(start.initial_admin))
        sys.stdout.flush()
    app = create_app(gate)
    tls = settings.tls_cert is not None
    scheme = "https" if tls else "http"
    _notice(
        settings.log_format,
        logging.INFO,
        f"stateward serving {scheme}://{settings.host}:{settings.port}/state/<path> "
        f"(data: {settings.data_dir}"
        + ("" if settings.database_url is None else f", metadata: {settings.database_display()}")
        + ")",
    )
    tls_options: dict[str, Any] = {}
    if tls:
        tls_options = {
            "ssl_certfile": str(settings.tls_cert),
            "ssl_keyfile": str(settings.tls_key),
        }
        if settings.tls_client_ca is not None:
            tls_options["ssl_ca_certs"] = str(settings.tls_client_ca)
            tls_options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    config = TlsConfig(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config,  # uvicorn's error and access logs use our formatter
        timeout_keep_alive=30,
        # h11 accepts any method token, so unknown methods get our 405 rather than a
        # parser-level 400 (httptools only knows a fixed list of methods).
        http=PeerCertH11Protocol if tls else "h11",
        server_header=False,
        # uvicorn would otherwise trust X-Forwarded-For from loopback and rewrite the client
        # address; stateward resolves proxies itself, only from trusted_proxies.
        proxy_headers=False,
        h11_max_incomplete_event_size=64 * 1024,
        **tls_options,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run() does


def _notice(log_format: str, level: int, text: str) -> None:
    """A start-up message: plain on stderr, or a log record when logs are JSON (so every line
    of a JSON log parses). The initial admin token itself always goes to stdout only."""
    if log_format == "json":
        message = text.removeprefix("stateward: ").removeprefix("WARNING: ")
        logging.getLogger("stateward.serve").log(level, message)
    else:
        click.echo(text, err=True)
