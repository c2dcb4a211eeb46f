"""``stateward export``: the current states as files OpenTofu can read without stateward.

The way out, and the recovery path if stateward itself is gone: each chosen path is written as
``<dir>/<path>/terraform.tfstate`` (the key layout of an S3 backend whose ``key`` is
``<path>/terraform.tfstate``), encrypted with an OpenTofu encryption description (pbkdf2
passphrase or AWS KMS, as in ``stateward tofu encrypt``), so ``tofu`` alone can read it with the
same ``encryption {}`` block. States that clients already encrypted are written as they are.
Plaintext export needs ``--plaintext``: it is a deliberate act.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from stateward.cli.context import CliContext, pass_ctx
from stateward.globs import glob_match
from stateward.tofu import TofuError, build_target, load_config


@click.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--path", "globs", multiple=True, help="Path glob to export (default: all).")
@click.option(
    "--tofu-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="OpenTofu encryption description (TOML/JSON) to encrypt plaintext states with.",
)
@click.option("--plaintext", is_flag=True, help="Write unencrypted states (no --tofu-config).")
@pass_ctx
def export(
    obj: CliContext,
    directory: Path,
    globs: tuple[str, ...],
    tofu_config: Path | None,
    plaintext: bool,
) -> None:
    """Write current states as (OpenTofu-encrypted) state files under DIRECTORY."""
    if (tofu_config is None) == (not plaintext):
        raise click.ClickException("give exactly one of --tofu-config FILE and --plaintext")
    target = None
    if tofu_config is not None:
        try:
            target = build_target(load_config(tofu_config), "state")
        except TofuError as exc:
            raise click.ClickException(str(exc)) from None
    svc = obj.service()
    paths = [
        s.path
        for s in svc.list_states(obj.who)
        if not globs or any(glob_match(g, s.path) for g in globs)
    ]
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    count = 0
    with click.progressbar(paths, label="exporting", file=click.get_text_stream("stderr")) as bar:
        for path in bar:
            state = svc.read(obj.who, path)
            if state is None:
                continue
            body = state.body
            if target is not None and b'"encryption_version"' not in body[:4096]:
                try:
                    body = target.encrypt(body)
                except TofuError as exc:
                    raise click.ClickException(f"{path}: {exc}") from None
            _write(directory / path / "terraform.tfstate", body)
            count += 1
    click.echo(f"exported {count} state(s) to {directory}")


def _write(file: Path, data: bytes) -> None:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = file.with_name(file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)
