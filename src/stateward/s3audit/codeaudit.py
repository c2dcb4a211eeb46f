"""``stateward s3 audit --code DIR``: the Terraform/OpenTofu code that defines and uses the
state bucket.

Which buckets are *state* buckets: those whose literal name is the ``--bucket`` or the bucket
of a ``backend "s3"`` block in the code; with neither known, every ``aws_s3_bucket`` whose
name or label mentions ``state``. Split resources (``aws_s3_bucket_versioning`` …) belong to a
bucket when their ``bucket`` argument references it (``aws_s3_bucket.X.…``) or names it.
Bucket policies are read as text: the three denies are recognized by their condition keys in
the policy expression or in the ``aws_iam_policy_document`` data sources it references.
Literal values found (credentials, passphrases) are never echoed: only where they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stateward.s3audit import hclload
from stateward.s3audit.hclload import HclFile, blocks, labelled, literal, truthy
from stateward.s3audit.model import Location, Recorder, Report
from stateward.s3audit.target import MIN_RECOVERY_DAYS

_CRED_ATTRS = ("access_key", "secret_key", "token")
_PAB = ("block_public_acls", "block_public_policy", "ignore_public_acls",
        "restrict_public_buckets")
_TLS = re.compile(r"aws:SecureTransport", re.IGNORECASE)
_SSE_HEADER = re.compile(r"s3:x-amz-server-side-encryption(?!-)", re.IGNORECASE)
_KEY_HEADER = re.compile(r"s3:x-amz-server-side-encryption-aws-kms-key-id", re.IGNORECASE)
_REF = re.compile(r"\b(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\b")
_DATA_REF = re.compile(r"data\.aws_iam_policy_document\.([A-Za-z0-9_-]+)")


@dataclass
class Res:
    file: HclFile
    rtype: str
    name: str
    body: dict[str, Any]

    @property
    def address(self) -> str:
        return f"{self.rtype}.{self.name}"

    def loc(self) -> Location:
        return Location(self.file.path, self.file.line_of("resource", f'"{self.rtype}"',
                                                          f'"{self.name}"'))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _backends(files: list[HclFile], rec: Recorder, names: set[str]) -> None:
    for f in files:
        for tf in f.doc.get("terraform", []) or []:
            for kind, body in labelled(tf, "backend"):
                if kind != "s3":
                    continue
                loc = Location(f.path, f.line_of("backend", '"s3"'))
                res = f"{f.path}: backend \"s3\""
                bucket = literal(body.get("bucket"))
                if bucket:
                    names.add(bucket)
                ctx = {"bucket": bucket or "<BUCKET>"}
                _result(rec, "SW-CODE-001", res, loc, None if truthy(body.get("encrypt"))
                        else "encrypt is not true", ctx)
                _result(rec, "SW-CODE-002", res, loc, None if body.get("kms_key_id")
                        else "no kms_key_id", ctx)
                locked = truthy(body.get("use_lockfile")) or bool(body.get("dynamodb_table"))
                _result(rec, "SW-CODE-003", res, loc, None if locked
                        else "neither use_lockfile = true nor dynamodb_table", ctx)
                _credentials(f, body, res, loc, rec)
        for kind, body in ((k, b) for item in f.doc.get("provider", []) or []
                           for k, b in item.items() if isinstance(b, dict)):
            if hclload.label(kind) == "aws":
                _credentials(f, body, f"{f.path}: provider \"aws\"",
                             Location(f.path, f.line_of("provider", '"aws"')), rec)


def _credentials(f: HclFile, body: dict[str, Any], res: str, loc: Location,
                 rec: Recorder) -> None:
    lits = [a for a in _CRED_ATTRS if literal(body.get(a))]
    _result(rec, "SW-CODE-004", res, loc, f"literal {', '.join(lits)} (value not shown)"
            if lits else None, {})


def _result(rec: Recorder, check_id: str, res: str, loc: Location, problem: str | None,
            ctx: dict[str, str]) -> None:
    if problem is None:
        rec.passed(check_id, res)
    else:
        rec.finding(check_id, res, problem, loc, **ctx)


def _belongs(split: Res, bucket: Res, name: str | None) -> bool:
    ref = split.body.get("bucket")
    text = ref if isinstance(ref, str) else ""
    return f"aws_s3_bucket.{bucket.name}." in text or (name is not None and literal(ref) == name)


def _split(all_res: list[Res], rtype: str, bucket: Res, name: str | None) -> list[Res]:
    return [r for r in all_res if r.rtype == rtype and _belongs(r, bucket, name)]


def _state_buckets(all_res: list[Res], names: set[str]) -> list[Res]:
    buckets = [r for r in all_res if r.rtype == "aws_s3_bucket"]
    if names:
        return [b for b in buckets if literal(b.body.get("bucket")) in names]
    return [b for b in buckets if "state" in (b.name + _text(b.body.get("bucket", ""))).lower()]


def _sse_rules(all_res: list[Res], b: Res, name: str | None) -> list[dict[str, Any]]:
    rules = [r for s in _split(all_res, "aws_s3_bucket_server_side_encryption_configuration", b,
                               name) for r in blocks(s.body, "rule")]
    for inline in blocks(b.body, "server_side_encryption_configuration"):
        rules += blocks(inline, "rule")
    return rules


def _lifecycle_problem(all_res: list[Res], b: Res, name: str | None) -> str | None:
    rules = [r for s in _split(all_res, "aws_s3_bucket_lifecycle_configuration", b, name)
             for r in blocks(s.body, "rule") if literal(r.get("status")) != "Disabled"]
    if not rules:
        return "no lifecycle configuration"
    if any(blocks(r, "expiration") or blocks(r, "transition") for r in rules):
        return "a rule expires or transitions current objects"
    days = [d for r in rules for n in blocks(r, "noncurrent_version_expiration")
            if isinstance(d := n.get("noncurrent_days"), int)]
    if not days:
        return "no noncurrent_version_expiration"
    if min(days) < MIN_RECOVERY_DAYS:
        return f"noncurrent versions expire after {min(days)} day(s)"
    return None


def _policy_text(all_res: list[Res], data: dict[str, Res], b: Res, name: str | None) -> str:
    parts = []
    for pol in _split(all_res, "aws_s3_bucket_policy", b, name):
        text = _text(pol.body.get("policy", ""))
        parts.append(text)
        parts += [_text(data[d].body) for d in _DATA_REF.findall(text) if d in data]
    return "\n".join(parts)


def _bucket(all_res: list[Res], data: dict[str, Res], b: Res, rec: Recorder) -> None:
    name = literal(b.body.get("bucket"))
    loc, res = b.loc(), b.address
    ctx = {"bucket": name or "<BUCKET>"}

    def check(cid: str, problem: str | None) -> None:
        _result(rec, cid, res, loc, problem, ctx)

    prevent = any(truthy(lc.get("prevent_destroy")) for lc in blocks(b.body, "lifecycle"))
    check("SW-CODE-005", None if prevent else "no prevent_destroy = true")
    versioned = any(
        literal(vc.get("status")) == "Enabled"
        for v in _split(all_res, "aws_s3_bucket_versioning", b, name)
        for vc in blocks(v.body, "versioning_configuration")
    ) or any(truthy(v.get("enabled")) for v in blocks(b.body, "versioning"))
    check("SW-CODE-006", None if versioned else "no versioning with status Enabled")
    rules = _sse_rules(all_res, b, name)
    defaults = [d for r in rules for d in blocks(r, "apply_server_side_encryption_by_default")]
    kms = [d for d in defaults if literal(d.get("sse_algorithm")) in ("aws:kms", "aws:kms:dsse")
           and d.get("kms_master_key_id")]
    check("SW-CODE-007", None if kms else "no aws:kms default encryption naming a key")
    check("SW-CODE-008", None if any(truthy(r.get("bucket_key_enabled")) for r in rules)
          else "bucket_key_enabled is not true")
    pabs = _split(all_res, "aws_s3_bucket_public_access_block", b, name)
    full = any(all(truthy(p.body.get(flag)) for flag in _PAB) for p in pabs)
    check("SW-CODE-009", None if full else "no public access block with all four flags true")
    owner = any(literal(r.get("object_ownership")) == "BucketOwnerEnforced"
                for o in _split(all_res, "aws_s3_bucket_ownership_controls", b, name)
                for r in blocks(o.body, "rule"))
    check("SW-CODE-010", None if owner else "no BucketOwnerEnforced ownership controls")
    check("SW-CODE-011", _lifecycle_problem(all_res, b, name))
    logged = bool(_split(all_res, "aws_s3_bucket_logging", b, name) or blocks(b.body, "logging"))
    check("SW-CODE-012", None if logged else "no access logging")
    policy = _policy_text(all_res, data, b, name)
    check("SW-CODE-013", None if _TLS.search(policy) else "no deny on aws:SecureTransport")
    check("SW-CODE-014", None if _SSE_HEADER.search(policy)
          else "no deny on s3:x-amz-server-side-encryption")
    check("SW-CODE-015", None if _KEY_HEADER.search(policy)
          else "no deny on s3:x-amz-server-side-encryption-aws-kms-key-id")
    keys = {m.group(2) for d in kms for m in _REF.finditer(_text(d.get("kms_master_key_id")))
            if m.group(1) == "aws_kms_key"}
    for key in (r for r in all_res if r.rtype == "aws_kms_key" and r.name in keys):
        _result(rec, "SW-CODE-016", key.address, key.loc(),
                None if truthy(key.body.get("enable_key_rotation"))
                else "enable_key_rotation is not true", ctx)


def _encryption(files: list[HclFile], rec: Recorder) -> None:
    for f in files:
        for tf in f.doc.get("terraform", []) or []:
            for enc in blocks(tf, "encryption"):
                loc = Location(f.path, f.line_of("encryption", "{"))
                res = f"{f.path}: terraform.encryption"
                targets = blocks(enc, "state") + blocks(enc, "plan")
                lax = [t for t in targets if not truthy(t.get("enforced"))]
                _result(rec, "SW-CODE-017", res, loc, "a state/plan block without enforced = "
                        "true" if lax or not targets else None, {})
                literals = [
                    f"{kind}.{hclload.label(name)}" for kind, named in labelled(enc, "key_provider")
                    for name, body in named.items() if isinstance(body, dict)
                    and literal(body.get("passphrase"))
                ]
                _result(rec, "SW-CODE-018", res, loc, f"literal passphrase in key_provider "
                        f"{', '.join(literals)} (value not shown)" if literals else None, {})


def audit_code(root: Path, bucket: str | None, report: Report | None = None) -> Report:
    """Raises :class:`hclload.MissingExtra` without python-hcl2."""
    report = report or Report(str(root))
    rec = Recorder(report)
    loaded = hclload.load_dir(root)
    for path, reason in loaded.failed:
        rec.not_checked("SW-CODE-019", path, reason)
    if not loaded.files and not loaded.failed:
        rec.not_checked("SW-CODE-019", str(root), "no .tf or .tofu files")
    names = {bucket} if bucket else set()
    _backends(loaded.files, rec, names)
    all_res = [Res(f, t, n, b) for f in loaded.files for t, n, b in hclload.resources(f)]
    data = {n: Res(f, t, n, b) for f in loaded.files
            for t, n, b in hclload.resources(f, "data") if t == "aws_iam_policy_document"}
    for b in _state_buckets(all_res, names):
        _bucket(all_res, data, b, rec)
    _encryption(loaded.files, rec)
    return report
