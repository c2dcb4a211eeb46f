"""``stateward tofu``: OpenTofu client-side encryption from the command line.

For operators who need to look inside, re-key or migrate states and plans that OpenTofu encrypted
client-side (``terraform { encryption { … } }``), without running OpenTofu. The encryption
description is a TOML/JSON translation of the ``encryption {}`` block (docs/opentofu-encryption.md).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import click

from stateward.tofu import TofuError, build_target, inspect_payload, load_config
from stateward.tofu.config import EncryptionConfig
from stateward.tofu.envelope import Kind
from stateward.tofu.inspect import Inspection

_CONFIG_HELP = "Encryption description (TOML or JSON), the translation of encryption {}."


def _kind(plan: bool) -> Kind:
    return "plan" if plan else "state"


def _read_input(source: str) -> bytes:
    try:
        if source == "-":
            stdin: BinaryIO = sys.stdin.buffer
            return stdin.read()
        return Path(source).read_bytes()
    except OSError as exc:
        raise click.ClickException(
            f"cannot read {source}: {exc.strerror or type(exc).__name__}"
        ) from None


def _write_output(target: str | None, data: bytes) -> None:
    """Write to stdout, or atomically to a new file of mode 0600 (it may hold a plaintext)."""
    if target is None or target == "-":
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    path = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {target}: {exc.strerror or type(exc).__name__}"
        ) from None


def _config(path: Path) -> EncryptionConfig:
    try:
        return load_config(path)
    except TofuError as exc:
        raise click.ClickException(str(exc)) from None


def _transform_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments of ``decrypt`` and ``encrypt``: a method chain, the kind, input, output."""
    for option in reversed(
        (
            click.option(
                "--config",
                "config_path",
                required=True,
                type=click.Path(dir_okay=False, path_type=Path),
                help=_CONFIG_HELP,
            ),
            click.option("--plan", is_flag=True, help="The input is a plan file, not a state."),
            click.option("-o", "--output", default=None, help="Output file (default: stdout)."),
            click.argument("input_file", metavar="INPUT"),
        )
    ):
        command = option(command)
    return command


@click.group()
def tofu() -> None:
    """Read and write OpenTofu client-side encrypted states and plans."""


@tofu.command("decrypt")
@_transform_options
def decrypt(config_path: Path, plan: bool, output: str | None, input_file: str) -> None:
    """Decrypt INPUT (a file, or - for stdin) with the state or plan method chain.

    A plaintext INPUT is accepted if the chain has an unencrypted method. When a fallback method
    was needed, "migration: …" is printed on stderr: rewrite the data with the primary method.
    """
    config = _config(config_path)
    payload = _read_input(input_file)
    try:
        result = build_target(config, _kind(plan)).decrypt(payload)
    except TofuError as exc:
        raise click.ClickException(str(exc)) from None
    if result.migration:
        click.echo(f"migration: decrypted with fallback method {result.method}", err=True)
    _write_output(output, result.plaintext)


@tofu.command("encrypt")
@_transform_options
def encrypt(config_path: Path, plan: bool, output: str | None, input_file: str) -> None:
    """Encrypt the plaintext INPUT (a file, or - for stdin) with the primary method."""
    config = _config(config_path)
    payload = _read_input(input_file)
    try:
        target = build_target(config, _kind(plan))
        data = target.encrypt(payload)
    except TofuError as exc:
        raise click.ClickException(str(exc)) from None
    _write_output(output, data)


@tofu.command("inspect")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Optional: resolves encrypted_metadata_alias entries.",
)
@click.option("--plan", is_flag=True, help="The input is a plan file, not a state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("input_file", metavar="INPUT")
def inspect(config_path: Path | None, plan: bool, as_json: bool, input_file: str) -> None:
    """Describe INPUT without decrypting it: version, serial/lineage, key providers used."""
    config = _config(config_path) if config_path is not None else None
    payload = _read_input(input_file)
    try:
        report = inspect_payload(payload, _kind(plan), config)
    except TofuError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        _print_report(report)


def _print_report(report: Inspection) -> None:
    echo = click.echo
    if not report.encrypted:
        echo(f"{report.kind}: not encrypted (plaintext)")
        if report.kind == "state":
            echo(f"terraform_version: {report.terraform_version}")
            echo(f"serial: {report.serial}")
            echo(f"lineage: {report.lineage}")
        return
    echo(f"{report.kind}: encrypted")
    echo(f"encryption_version: {report.encryption_version}")
    if report.kind == "state":
        serial = "(absent)" if report.serial is None and report.lineage is None else report.serial
        echo(f"serial: {serial}")
        echo(f"lineage: {report.lineage if report.lineage is not None else '(absent)'}")
    echo(f"encrypted_data: {report.encrypted_bytes} bytes")
    if not report.meta:
        echo("meta: (none: raw keys, no key provider)")
    for entry in report.meta:
        kind = entry.provider_type or "unknown"
        echo(f"meta {entry.key}: provider type {kind} ({entry.source})")
        for name, value in entry.details.items():
            echo(f"    {name}: {value}")
