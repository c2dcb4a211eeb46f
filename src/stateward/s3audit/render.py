"""The audit as a rich table (with a summary line) or JSON.

Everything that comes from AWS or from the code (policies, tags, keys, file names, error
messages) is printed as text: :func:`safe` escapes rich markup and replaces control
characters, line breaks and bidi overrides, so a hostile object key can neither restyle the
report nor move the cursor nor reorder what the reader sees.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import IO, Final

from stateward.s3audit.catalog import CHECKS, render_fix
from stateward.s3audit.model import Report, Severity

_STYLE: Final = {
    Severity.CRITICAL: "bold red", Severity.HIGH: "red", Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan", Severity.INFO: "dim",
}  # fmt: skip
MAX_FIELD = 400


def safe(text: str, limit: int = MAX_FIELD) -> str:
    """``text`` as inert, one-line rich text: control and format characters (C0, C1, DEL,
    bidi overrides and isolates, zero-width) become ``\\uXXXX``; markup is escaped."""
    from rich.markup import escape

    out = []
    for ch in text[:limit]:
        cat = unicodedata.category(ch)
        out.append(f"\\u{ord(ch):04x}" if cat in ("Cc", "Cf", "Zl", "Zp") else ch)
    if len(text) > limit:
        out.append("…")
    return escape("".join(out))


def plain(text: str, limit: int = 10_000) -> str:
    """The same neutralisation without rich escaping (SARIF, fix blocks in JSON stay as
    they are: JSON escapes control characters itself)."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch
        for ch in text[:limit]
    )


def summary_line(report: Report, fail_on: Severity) -> str:
    counts = report.counts()
    by = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n)
    return (
        f"{len(report.findings)} finding(s){f' ({by})' if by else ''}, "
        f"{len(report.passed)} passed, {len(report.not_checked)} not checked, "
        f"{len(report.not_applicable)} not applicable; exit {report.exit_code(fail_on)} "
        f"(--fail-on {fail_on.label})"
    )


def print_table(report: Report, fail_on: Severity, out: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    stream = out or sys.stdout
    console = Console(file=stream, width=None if stream.isatty() else 200,
                      highlight=False, emoji=False, soft_wrap=False)
    console.print(f"[bold]stateward s3 audit[/bold] {safe(report.target)}")
    if report.findings:
        table = Table("id", "severity", "resource", "found", "why", title="Findings")
        order = sorted(report.findings, key=lambda f: (-f.severity, f.check_id, f.resource))
        for f in order:
            where = f"{f.location.path}:{f.location.line}" if f.location else f.resource
            table.add_row(f.check_id, f"[{_STYLE[f.severity]}]{f.severity.label}[/]",
                          safe(where), safe(f.found), safe(CHECKS[f.check_id].why))
        console.print(table)
        console.print("[bold]How to fix[/bold]")
        seen: set[str] = set()
        for f in order:
            if f.check_id in seen:
                continue
            seen.add(f.check_id)
            fix = render_fix(CHECKS[f.check_id], dict(f.context))
            console.print(f"[bold]{f.check_id}[/bold] {safe(CHECKS[f.check_id].title)}")
            for line in fix["hcl"].splitlines():
                console.print("  " + safe(line), soft_wrap=True)
            if fix["cli"]:
                console.print("  $ " + safe(fix["cli"], 2000), soft_wrap=True)
    if report.not_checked:
        table = Table("checks", "resource", "why not", title="Not checked (never passed)")
        for n in report.not_checked:
            table.add_row(", ".join(n.check_ids), safe(n.resource), safe(n.reason))
        console.print(table)
    console.print(safe(summary_line(report, fail_on)))


def emit_json(report: Report, fail_on: Severity, out: IO[str] | None = None) -> None:
    stream = out or sys.stdout
    json.dump(report.to_dict(fail_on), stream, indent=2, sort_keys=True, ensure_ascii=True)
    stream.write("\n")
