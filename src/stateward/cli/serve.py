"""``stateward serve``."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from stateward.cli.context import CliContext, pass_ctx


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", help="Bind address (loopback only until access control lands).")
@click.option("--port", type=int)
@click.option("--max-body-bytes", type=int, help="Largest accepted state body.")
@pass_ctx
def serve(
    obj: CliContext,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    max_body_bytes: int | None,
) -> None:
    """Run the state server."""
    import uvicorn

    from stateward.http.app import create_app
    from stateward.service.factory import build_service

    settings = obj.settings(
        data_dir=data_dir or obj.flags.get("data_dir"),
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
    )
    service = build_service(settings)
    app = create_app(service)
    click.echo(
        f"stateward serving http://{settings.host}:{settings.port}/state/<path> "
        f"(data: {settings.data_dir})",
        err=True,
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(message)s")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_keep_alive=30,
        # h11 accepts any method token, so unknown methods get our 405 rather than a
        # parser-level 400 (httptools only knows a fixed list of methods).
        http="h11",
        server_header=False,
        h11_max_incomplete_event_size=64 * 1024,
    )
