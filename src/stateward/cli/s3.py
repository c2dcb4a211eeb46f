"""``stateward s3 audit|bootstrap``: S3 state backends checked as state backends, and the
hardened setup written (or created) for teams starting fresh.

Independent of the stateward server: no data directory is read or created. The work is in
:mod:`stateward.s3audit`; these commands only parse options and choose the output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

SEVERITIES = ("info", "low", "medium", "high", "critical")


class CannotCheck(click.ClickException):
    """The audit could not run at all: exit status 2, like a check that could not run."""

    exit_code = 2


@click.group("s3")
def s3() -> None:
    """Audit an S3 state backend (bucket, key, lock table, roles, states, code); bootstrap a
    hardened one."""


@s3.command("audit")
@click.option("--bucket", help="The state bucket (live audit, read-only AWS calls).")
@click.option("--key-prefix", default="", help="Only the states under this prefix.")
@click.option("--lock-table", help="The DynamoDB lock table, if the backends use one.")
@click.option("--role", "roles", multiple=True, metavar="ARN[=ENV]",
              help="A state role to check for least privilege (repeatable); =ENV names the "
              "environment it is for.")
@click.option("--trusted-account", "trusted", multiple=True, metavar="ID",
              help="An account the bucket policy may grant (repeatable).")
@click.option("--stale-lock-hours", type=click.FloatRange(min=0), default=24.0,
              show_default=True, help="A .tflock older than this is stale.")
@click.option("--max-state-bytes", type=click.IntRange(min=1), default=64 * 1024 * 1024,
              show_default=True, help="States above this are not read (nor scanned).")
@click.option("--code", "code_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), help="Also audit the Terraform/OpenTofu code in DIR.")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@click.option("--sarif", "sarif_out", metavar="FILE|-", help="SARIF 2.1.0 to FILE (or stdout).")
@click.option("--fail-on", type=click.Choice(SEVERITIES), default="low", show_default=True,
              help="Exit 1 when a finding is at or above this severity.")
@click.option("--region", help="AWS region (default: the usual AWS configuration).")
@click.option("--endpoint-url", help="S3-compatible or private endpoint for every service.")
@click.option("--profile", help="AWS profile.")
def audit(
    bucket: str | None, key_prefix: str, lock_table: str | None, roles: tuple[str, ...],
    trusted: tuple[str, ...], stale_lock_hours: float, max_state_bytes: int,
    code_dir: Path | None, as_json: bool, sarif_out: str | None, fail_on: str,
    region: str | None, endpoint_url: str | None, profile: str | None,
) -> None:  # fmt: skip
    """Check a bucket as a state backend, and the states inside it (exit 0 clean, 1 findings
    at or above --fail-on, 2 a check could not run). Read-only."""
    from stateward.s3audit import render, sarif
    from stateward.s3audit.hclload import MissingExtra
    from stateward.s3audit.model import Report, Severity
    from stateward.s3audit.target import RoleSpec, Target

    if not bucket and code_dir is None:
        raise click.UsageError("give --bucket, --code DIR, or both")
    if as_json and sarif_out == "-":
        raise click.UsageError("--json and --sarif - both want stdout: choose one")
    try:
        specs = tuple(RoleSpec.parse(r) for r in roles)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--role") from None
    bad = [a for a in trusted if not (a.isdigit() and len(a) == 12)]
    if bad:
        raise click.BadParameter(f"not a 12-digit account id: {bad[0]!r}",
                                 param_hint="--trusted-account")
    target_name = " + ".join(
        x for x in (f"s3://{bucket}/{key_prefix}" if bucket else "",
                    str(code_dir) if code_dir else "") if x)
    report = Report(target_name)
    if bucket:
        from stateward.s3audit.awsapi import Clients
        from stateward.s3audit.runner import audit_bucket

        target = Target(bucket, key_prefix=key_prefix, lock_table=lock_table, roles=specs,
                        trusted_accounts=frozenset(trusted), stale_lock_hours=stale_lock_hours,
                        max_state_bytes=max_state_bytes)
        try:
            audit_bucket(Clients(region, endpoint_url, profile), target, report)
        except Exception as exc:
            import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

            if isinstance(exc, botocore.exceptions.BotoCoreError):
                raise CannotCheck(f"AWS client setup failed: {type(exc).__name__}") from None
            raise
    if code_dir is not None:
        from stateward.s3audit.codeaudit import audit_code

        try:
            audit_code(code_dir, bucket, report)
        except MissingExtra as exc:
            raise CannotCheck(str(exc)) from None
    threshold = Severity.parse(fail_on)
    if sarif_out is not None:
        doc = json.dumps(sarif.to_sarif(report, str(code_dir) if code_dir else None),
                         indent=2, ensure_ascii=True)
        if sarif_out == "-":
            sys.stdout.write(doc + "\n")
        else:
            Path(sarif_out).write_text(doc + "\n", encoding="utf-8")
    if as_json:
        render.emit_json(report, threshold)
    elif sarif_out != "-":
        render.print_table(report, threshold)
    sys.exit(report.exit_code(threshold))


@s3.command("bootstrap")
@click.option("--bucket", required=True, help="The state bucket to create.")
@click.option("--region", required=True, help="Its region.")
@click.option("--env", "envs", multiple=True, required=True,
              help="An environment (repeatable): one prefix, role and backend block each.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the module (default ./s3-backend-BUCKET).")
@click.option("--stateward-endpoint", metavar="URL",
              help="stateward's S3 endpoint, written into the backend blocks.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Also create it now with boto3 (idempotent), and write import blocks.")
@click.option("--force", is_flag=True, help="Overwrite files that differ.")
@click.option("--endpoint-url", help="S3-compatible or private endpoint for --apply.")
@click.option("--profile", help="AWS profile for --apply.")
def bootstrap(
    bucket: str, region: str, envs: tuple[str, ...], out_dir: Path | None,
    stateward_endpoint: str | None, do_apply: bool, force: bool, endpoint_url: str | None,
    profile: str | None,
) -> None:  # fmt: skip
    """Write a hardened Terraform module for a new state bucket (and create it with --apply)."""
    from stateward.s3audit import bootstrap_hcl
    from stateward.s3audit.bootstrap_plan import Plan

    try:
        plan = Plan(bucket, region, envs, stateward_endpoint)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = out_dir or Path(f"s3-backend-{bucket}")
    files = bootstrap_hcl.files(plan)
    if do_apply:
        from stateward.s3audit.awsapi import Clients, Unchecked
        from stateward.s3audit.bootstrap_apply import apply, import_blocks

        try:
            applied = apply(Clients(region, endpoint_url, profile), plan)
        except Unchecked as exc:
            raise click.ClickException(f"stopped: {exc}") from None
        for what, state in applied.steps:
            click.echo(f"{state:9}  {what}")
        click.echo("created or changed the backend" if applied.changed
                   else "nothing to change: everything was already in place")
        files = bootstrap_hcl.files(plan, applied.key_arn, applied.account)
        files["imports.tf"] = import_blocks(plan, applied)
    _write(out, files, force)


def _write(out: Path, files: dict[str, str], force: bool) -> None:
    """Write the module; a file that exists with other content is refused without --force
    (it may hold someone's edits)."""
    clashes = [name for name, text in files.items() if (out / name).exists()
               and (out / name).read_text(encoding="utf-8") != text]
    if clashes and not force:
        raise click.ClickException(f"{out / clashes[0]} exists and differs (use --force)")
    for name, text in sorted(files.items()):
        path = out / name
        same = path.exists() and path.read_text(encoding="utf-8") == text
        if not same:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        click.echo(f"{'unchanged' if same else 'wrote':9}  {path}")
