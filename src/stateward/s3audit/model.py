"""Findings, check outcomes and the report of one audit (pure data, no I/O).

Every check ends in one of four outcomes for a resource: *passed*, a *finding*, *not checked*
(an API refused or is missing: never counted as passed, exit status 2) or *not applicable*
(nothing to check, e.g. no ``--lock-table`` given). The renderers (table, JSON, SARIF) and the
exit status are computed from :class:`Report` alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so ``--fail-on`` is a comparison."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}") from None


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the catalog: what it looks at and how to fix a failure.

    ``fix_hcl`` and ``fix_cli`` are templates (``str.format_map``) over the placeholders of
    :data:`stateward.s3audit.catalog.PLACEHOLDERS`; a finding fills them from its context."""

    id: str
    title: str
    severity: Severity
    #: ``aws`` (live APIs) or ``code`` (the Terraform/OpenTofu files).
    source: str
    why: str
    fix_hcl: str
    fix_cli: str
    checkov: tuple[str, ...] = ()
    aws_config: tuple[str, ...] = ()
    #: Which of the harms it refuses: disclosure, corruption, deletion or detection.
    harm: str = ""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in the code a ``code`` finding is (path relative to ``--code``, 1-based line)."""

    path: str
    line: int = 1


@dataclass(frozen=True, slots=True)
class Finding:
    check_id: str
    severity: Severity
    #: The AWS resource (ARN, ``s3://bucket/key``) or code address (``aws_s3_bucket.state``).
    resource: str
    #: What was found, one line. Never holds a secret value.
    found: str
    location: Location | None = None
    #: Values for the check's fix templates (bucket, key ARN, table …).
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NotChecked:
    check_ids: tuple[str, ...]
    resource: str
    #: Why (the API, the error code): what to grant or run so the check can run.
    reason: str


@dataclass(frozen=True, slots=True)
class NotApplicable:
    check_ids: tuple[str, ...]
    resource: str
    reason: str


@dataclass
class Report:
    """Everything one audit found; :meth:`exit_code` is the CLI's exit status."""

    target: str
    findings: list[Finding] = field(default_factory=list)
    not_checked: list[NotChecked] = field(default_factory=list)
    not_applicable: list[NotApplicable] = field(default_factory=list)
    #: (check id, resource) of every check that ran and passed.
    passed: list[tuple[str, str]] = field(default_factory=list)

    def finding_ids(self) -> list[str]:
        return sorted(f.check_id for f in self.findings)

    def not_checked_ids(self) -> list[str]:
        return sorted({cid for n in self.not_checked for cid in n.check_ids})

    def counts(self) -> dict[str, int]:
        out = {s.label: 0 for s in sorted(Severity, reverse=True)}
        for f in self.findings:
            out[f.severity.label] += 1
        return out

    def exit_code(self, fail_on: Severity) -> int:
        """1 when a finding is at or above ``fail_on``; else 2 when a check could not run;
        else 0. A definite failure outranks an incomplete audit: both are non-zero."""
        if any(f.severity >= fail_on for f in self.findings):
            return 1
        return 2 if self.not_checked else 0

    def to_dict(self, fail_on: Severity) -> dict[str, Any]:
        from stateward.s3audit.catalog import CHECKS, render_fix

        return {
            "target": self.target,
            "summary": {
                "findings": len(self.findings),
                "by_severity": self.counts(),
                "passed": len(self.passed),
                "not_checked": len(self.not_checked),
                "not_applicable": len(self.not_applicable),
                "fail_on": fail_on.label,
                "exit_code": self.exit_code(fail_on),
            },
            "findings": [
                {
                    "id": f.check_id,
                    "severity": f.severity.label,
                    "title": CHECKS[f.check_id].title,
                    "resource": f.resource,
                    "found": f.found,
                    "why": CHECKS[f.check_id].why,
                    "fix": render_fix(CHECKS[f.check_id], dict(f.context)),
                    "location": None
                    if f.location is None
                    else {"path": f.location.path, "line": f.location.line},
                }
                for f in self.findings
            ],
            "not_checked": [
                {"ids": list(n.check_ids), "resource": n.resource, "reason": n.reason}
                for n in self.not_checked
            ],
            "not_applicable": [
                {"ids": list(n.check_ids), "resource": n.resource, "reason": n.reason}
                for n in self.not_applicable
            ],
            "passed": [{"id": cid, "resource": res} for cid, res in self.passed],
        }


class Recorder:
    """What check functions write their outcomes to (one per audit)."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def finding(
        self,
        check_id: str,
        resource: str,
        found: str,
        location: Location | None = None,
        /,
        **context: str,
    ) -> None:
        from stateward.s3audit.catalog import CHECKS

        check = CHECKS[check_id]
        self.report.findings.append(
            Finding(check_id, check.severity, resource, found, location,
                    tuple(sorted(context.items())))
        )

    def passed(self, check_id: str, resource: str) -> None:
        self.report.passed.append((check_id, resource))

    def result(self, check_id: str, resource: str, problem: str | None, **context: str) -> None:
        """A finding when ``problem`` is set, else a pass."""
        if problem is None:
            self.passed(check_id, resource)
        else:
            self.finding(check_id, resource, problem, **context)

    def not_checked(self, check_ids: tuple[str, ...] | str, resource: str, reason: str) -> None:
        ids = (check_ids,) if isinstance(check_ids, str) else check_ids
        self.report.not_checked.append(NotChecked(ids, resource, reason))

    def not_applicable(self, check_ids: tuple[str, ...] | str, resource: str, reason: str) -> None:
        ids = (check_ids,) if isinstance(check_ids, str) else check_ids
        self.report.not_applicable.append(NotApplicable(ids, resource, reason))
