"""The audit as SARIF 2.1.0, for code-scanning tools (GitHub code scanning, GitLab, …).

One rule per check of the catalog (stable ids), one result per finding. Code findings point
at their file and line; live-AWS findings have no file, so they carry the resource as a
logical location. Not-checked checks are tool notifications (``toolExecutionNotifications``)
so that a reader sees the run was incomplete.
"""

from __future__ import annotations

from typing import Any, Final

from stateward import __version__
from stateward.s3audit.catalog import CHECKS, render_fix
from stateward.s3audit.model import Finding, Report, Severity
from stateward.s3audit.render import plain

SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL: Final = {
    Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
    Severity.LOW: "note", Severity.INFO: "note",
}  # fmt: skip
#: GitHub's security-severity (CVSS-like, 0-10) per severity.
_SCORE: Final = {
    Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0",
    Severity.INFO: "0.5",
}  # fmt: skip


def _rules() -> list[dict[str, Any]]:
    out = []
    for check in CHECKS.values():
        props: dict[str, Any] = {
            "tags": ["security", "terraform", f"harm:{check.harm}"] if check.harm
            else ["security", "terraform"],
            "security-severity": _SCORE[check.severity],
            "severity": check.severity.label,
        }
        if check.checkov:
            props["checkov"] = list(check.checkov)
        if check.aws_config:
            props["aws-config"] = list(check.aws_config)
        out.append({
            "id": check.id,
            "name": check.id.replace("-", ""),
            "shortDescription": {"text": check.title},
            "fullDescription": {"text": check.why},
            "help": {"text": check.fix_hcl.format_map(_Blank())},
            "defaultConfiguration": {"level": _LEVEL[check.severity]},
            "properties": props,
        })
    return out


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key.upper()}>"


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    fix = render_fix(CHECKS[f.check_id], dict(f.context))
    location: dict[str, Any] = {
        "logicalLocations": [{"fullyQualifiedName": plain(f.resource, 2000), "kind": "resource"}]
    }
    if f.location is not None:
        location["physicalLocation"] = {
            "artifactLocation": {"uri": f.location.path, "uriBaseId": "CODE"},
            "region": {"startLine": max(1, f.location.line)},
        }
    return {
        "ruleId": f.check_id,
        "ruleIndex": index[f.check_id],
        "level": _LEVEL[f.severity],
        "message": {"text": plain(f"{f.found} — {CHECKS[f.check_id].why}")},
        "locations": [location],
        "partialFingerprints": {"stateward/v1": f"{f.check_id}:{plain(f.resource, 2000)}"},
        "properties": {"severity": f.severity.label, "fix-cli": plain(fix["cli"]),
                       "fix-hcl": plain(fix["hcl"])},
    }


def to_sarif(report: Report, code_root: str | None = None) -> dict[str, Any]:
    rules = _rules()
    index = {r["id"]: i for i, r in enumerate(rules)}
    run: dict[str, Any] = {
        "tool": {"driver": {
            "name": "stateward s3 audit",
            "version": __version__,
            "rules": rules,
        }},
        "results": [_result(f, index) for f in report.findings],
        "invocations": [{
            "executionSuccessful": not report.not_checked,
            "toolExecutionNotifications": [
                {
                    "level": "warning",
                    "message": {"text": plain(f"not checked: {', '.join(n.check_ids)} on "
                                              f"{n.resource}: {n.reason}")},
                }
                for n in report.not_checked
            ],
        }],
    }
    if code_root is not None:
        run["originalUriBaseIds"] = {"CODE": {"description": {"text": "the --code directory"}}}
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
