"""``stateward export``: the current states as files or objects OpenTofu can read without
stateward.

The way out, and the recovery path if stateward itself is gone: each chosen path is written as
``<destination>/<path>/terraform.tfstate`` -- the key layout of an S3 backend whose ``key`` is
``<prefix>/<path>/terraform.tfstate`` (:mod:`stateward.s3layout`) -- under a local directory or
an S3 prefix (``s3://bucket/prefix``). Each plaintext state is encrypted with an OpenTofu
encryption description (pbkdf2 passphrase or AWS KMS, as in ``stateward tofu encrypt``), so
``tofu`` alone can read it with the same ``encryption {}`` block, or written as it is with
``--plaintext`` (a deliberate act); ``--policy FILE`` chooses one or the other per path glob.
States that clients already encrypted are written as they are. docs/import-export.md.

A directory export only writes into directories the current user owns and nobody else can
write to (created 0700), each file through a fresh 0600 temporary file (O_EXCL, no symlinks
followed) renamed into place: a file or link someone else prepared is never written through.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stateward.cli.context import CliContext, pass_ctx
from stateward.domain import s3layout
from stateward.domain.globs import glob_match
from stateward.tofu import TofuError
from stateward.transfer.export import (
    DirectorySink,
    ExportRule,
    S3Sink,
    Sink,
    client_encrypted,
    load_policy,
    rule_for,
)
from stateward.transfer.s3source import s3_client


@click.command("export")
@click.argument("destination")
@click.option("--path", "globs", multiple=True, help="Path glob to export (default: all).")
@click.option(
    "--tofu-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="OpenTofu encryption description (TOML/JSON) to encrypt plaintext states with.",
)
@click.option("--plaintext", is_flag=True, help="Write unencrypted states (no --tofu-config).")
@click.option(
    "--policy",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of [[rule]] paths=[globs] with tofu_config=FILE or plaintext=true.",
)
@click.option("--endpoint-url", help="S3 endpoint, for an s3:// destination.")
@click.option("--region", help="AWS region, for an s3:// destination.")
@pass_ctx
def export(
    obj: CliContext,
    destination: str,
    globs: tuple[str, ...],
    tofu_config: Path | None,
    plaintext: bool,
    policy: Path | None,
    endpoint_url: str | None,
    region: str | None,
) -> None:
    """Write current states as state files under DESTINATION: a directory, or an S3 prefix
    (s3://bucket/prefix), as <path>/terraform.tfstate.

    Plaintext states are encrypted with --tofu-config, written as they are with --plaintext,
    or either per path with --policy; states encrypted by their clients are written as they
    are."""
    if sum((tofu_config is not None, plaintext, policy is not None)) != 1:
        raise click.ClickException(
            "give exactly one of --tofu-config FILE, --plaintext and --policy FILE"
        )
    rules = load_policy(policy) if policy is not None else [ExportRule(("**",), tofu_config)]
    is_s3 = destination.startswith("s3://")
    if (endpoint_url or region) and not is_s3:
        raise click.ClickException("--endpoint-url and --region are for an s3:// destination")
    paths = [
        s.path
        for s in obj.call(obj.ops.history.list_states, readable=True)
        if not globs or any(glob_match(g, s.path) for g in globs)
    ]
    chosen = {path: rule_for(rules, path) for path in paths}
    uncovered = [p for p, r in chosen.items() if r is None]
    if uncovered:
        raise click.ClickException(
            f"nothing exported: no rule of {policy} covers {', '.join(uncovered[:20])}"
            + (" …" if len(uncovered) > 20 else "")
            + ' (add a last rule with paths = ["**"])'
        )
    for rule in {id(r): r for r in chosen.values() if r is not None}.values():
        rule.target()  # configuration errors before anything is written
    sink: Sink
    if is_s3:
        try:
            bucket, prefix = s3layout.parse_s3_url(destination)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        sink = S3Sink(s3_client(endpoint_url, region), bucket, prefix)
    else:
        if Path(destination).exists() and not Path(destination).is_dir():
            raise click.ClickException(f"{destination} exists and is not a directory")
        sink = DirectorySink(Path(destination))
    sink.prepare(paths)
    counts = {"encrypted": 0, "plaintext": 0, "client-encrypted": 0}
    with click.progressbar(paths, label="exporting", file=sys.stderr) as bar:
        for path in bar:
            state = obj.call(obj.ops.writes.read, path)
            if state is None:
                continue
            body = state.body
            chosen_rule = chosen[path]
            assert chosen_rule is not None
            if client_encrypted(body):
                counts["client-encrypted"] += 1
            elif (target := chosen_rule.target()) is not None:
                try:
                    body = target.encrypt(body)
                except TofuError as exc:
                    raise click.ClickException(f"{path}: {exc}") from None
                counts["encrypted"] += 1
            else:
                counts["plaintext"] += 1
            sink.write(path, body)
    total = sum(counts.values())
    detail = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    tail = f" ({detail})" if detail else ""
    click.echo(f"exported {total} state(s) to {sink.describe()}{tail}")
    if isinstance(sink, S3Sink) and paths:
        where = region or getattr(sink.client.meta, "region_name", None) or "REGION"
        block = s3layout.backend_block(sink.bucket, paths[0], sink.prefix, where)
        click.echo("read back with the S3 backend (default workspace), e.g.:\n" + block.rstrip())
