"""``stateward policy check``: lint the roles of a configuration file."""

from __future__ import annotations

import time

import click

from stateward.cli.context import CliContext, emit_json, pass_ctx
from stateward.domain.policy import PolicyConfig
from stateward.domain.policy_lint import Finding, TokenSummary, lint


@click.group()
def policy() -> None:
    """Check the authorization policy (the [roles.*] of the configuration)."""


def _print(finding: Finding) -> None:
    click.echo(f"{finding.severity.upper():<8}{finding.where}: {finding.what}")
    click.echo(f"{'':<8}why: {finding.why}")
    click.echo(f"{'':<8}fix: {finding.fix}")


def _active_tokens(obj: CliContext) -> list[TokenSummary]:
    """Tokens of the data dir, if it exists (linting a config must not create a data dir)."""
    settings = obj.settings()
    if settings.database_url is None and not settings.db_path.exists():
        return []
    now = time.time()
    return [
        TokenSummary(t.name, list(t.roles), t.expires_at)
        for t in obj.call(obj.ops.tokens.list_tokens)
        if t.status(now) == "active"
    ]


@policy.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_ctx
@click.pass_context
def check(ctx: click.Context, obj: CliContext, as_json: bool) -> None:
    """Lint the roles in the configuration; exit 1 if any grant is dangerous.

    Loads the configuration like every other command (--config FILE or STATEWARD_CONFIG), so
    an invalid role fails here with the offending key, as it would at start-up.
    """
    settings = obj.settings()
    findings = lint(PolicyConfig(roles=settings.roles), tokens=_active_tokens(obj))
    dangers = sum(1 for f in findings if f.severity == "danger")
    if as_json:
        emit_json(
            [
                {
                    "severity": f.severity,
                    "where": f.where,
                    "role": f.role,
                    "rule": f.rule,
                    "what": f.what,
                    "why": f.why,
                    "fix": f.fix,
                }
                for f in findings
            ]
        )
    else:
        for finding in findings:
            _print(finding)
        warnings = len(findings) - dangers
        click.echo(
            f"policy check: {len(settings.roles)} custom role(s), {dangers} danger(s), "
            f"{warnings} warning(s)"
        )
    if dangers:
        ctx.exit(1)
