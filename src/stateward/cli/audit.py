"""``stateward audit verify|export|tail|report``: the hash-chained audit trail, offline."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from collections import Counter, defaultdict

import click
from rich.table import Table

from stateward.cli.context import CliContext, pass_ctx, print_table
from stateward.domain.audit_record import AuditRecord
from stateward.domain.globs import glob_match
from stateward.jobs.sinks import record_line
from stateward.service.audit import AuditQuery

_AGO = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str | None) -> float | None:
    """``7d``/``12h``/``30m`` ago, or an ISO 8601 date/time (UTC if no zone)."""
    if text is None:
        return None
    m = _AGO.fullmatch(text.strip())
    if m:
        return time.time() - int(m.group(1)) * _SECONDS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.ClickException(
            f"invalid time {text[:40]!r}: use 30m, 12h, 7d, 2w or an ISO 8601 date/time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _query(**kw: str | None) -> AuditQuery:
    return AuditQuery(
        since=parse_when(kw.get("since")),
        until=parse_when(kw.get("until")),
        path=kw.get("path"),
        principal=kw.get("principal"),
        action=kw.get("action"),
        outcome=kw.get("outcome"),
    )


@click.group()
def audit() -> None:
    """The audit trail: verify the hash chain, export, follow, and report."""


@audit.command("verify")
@pass_ctx
def verify(obj: CliContext) -> None:
    """Check every record's hash and link; exit 1 naming the first bad record."""
    report = obj.call(obj.ops.audit.verify_audit)
    if report.ok:
        click.echo(f"audit trail intact: {report.checked} record(s), chain verified")
        return
    click.echo(
        f"audit trail BROKEN at record {report.first_bad_seq}: {report.problem} "
        f"({report.checked} record(s) read)",
        err=True,
    )
    sys.exit(1)


@audit.command("export")
@click.option("--since", help="Start: 7d, 12h, 30m ago, or an ISO date/time.")
@click.option("--until", help="End (exclusive), same forms.")
@click.option("--path", help="A state path or glob (prod/**).")
@click.option("--principal", help="A principal, or a prefix ending in '*'.")
@click.option("--action", help="read, write, lock, force-unlock, authenticate ...")
@click.option("--outcome", type=click.Choice(["ok", "denied", "failed"]))
@pass_ctx
def export(
    obj: CliContext,
    since: str | None,
    until: str | None,
    path: str | None,
    principal: str | None,
    action: str | None,
    outcome: str | None,
) -> None:
    """Matching records as JSON lines on stdout (ship them to a SIEM, or jq them)."""
    query = _query(
        since=since, until=until, path=path, principal=principal, action=action, outcome=outcome
    )
    for record in obj.call(obj.ops.audit.audit_records, query):
        click.echo(record_line(record))


@audit.command("tail")
@click.option("-n", "count", default=20, show_default=True, help="Records to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new records.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@pass_ctx
def tail(obj: CliContext, count: int, follow: bool, as_json: bool) -> None:
    """The newest records; with -f, follow the trail as it grows."""
    head = obj.call(obj.ops.audit.audit_head_seq)
    after = max(0, head - count)
    while True:
        for record in obj.call(obj.ops.audit.audit_records, AuditQuery(after_seq=after)):
            click.echo(record_line(record) if as_json else _text(record))
            after = record.seq
        if not follow:
            return
        time.sleep(1.0)


def _text(r: AuditRecord) -> str:
    where = r.path or "-"
    extra = f" {r.reason}" if r.reason else ""
    return (
        f"{_when(r.at)} #{r.seq} {r.outcome.upper():6} {r.status} {r.principal} from "
        f"{r.source or '-'} {r.action} {where} ({r.operation}){extra}"
    )


@audit.command("report")
@click.argument("path")
@click.option("--since", default="7d", show_default=True, help="7d, 12h ... or ISO time.")
@pass_ctx
def report(obj: CliContext, path: str, since: str) -> None:
    """Who touched PATH (a path or glob), from where, and what looked odd."""
    query = AuditQuery(since=parse_when(since), path=path)
    who: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    last: dict[tuple[str, str], float] = {}
    odd: list[AuditRecord] = []
    for r in obj.call(obj.ops.audit.audit_records, query):
        key = (r.principal, r.source)
        who[key][r.action] += 1
        last[key] = r.at
        if r.outcome != "ok" or r.action in {"force-unlock", "delete", "rollback", "admin"}:
            odd.append(r)
    table = Table("principal", "from", "actions", "last seen (UTC)")
    for (principal, source), actions in sorted(who.items(), key=lambda kv: -last[kv[0]]):
        summary = ", ".join(f"{a} {n}" for a, n in actions.most_common())
        table.add_row(principal, source or "-", summary, _when(last[(principal, source)]))
    click.echo(f"{path} since {since}:")
    print_table(table)
    since_ts = query.since or 0.0
    raised = [
        a
        for a in obj.call(obj.ops.alerts.list_alerts, include_acknowledged=True, limit=1000)
        if a.at >= since_ts and a.path is not None and glob_match(path, a.path)
    ]
    if raised:
        click.echo("\nalerts:")
        for a in reversed(raised):
            ack = " (acknowledged)" if a.acknowledged_at is not None else ""
            click.echo(f"  {_when(a.at)} #{a.id} {a.severity} {a.kind}: {a.summary}{ack}")
    if odd:
        click.echo("\nrefusals, failures and sensitive actions:")
        for r in odd[-50:]:
            click.echo("  " + _text(r))
    if not odd and not raised:
        click.echo(
            "\nnothing odd: no alerts, refusals, failures, deletes, rollbacks or force-unlocks"
        )
