"""Least privilege per environment: for each ``--role``, which environments' states it can
read or write, and whether it can erase history or the bucket's protections.

Environments are what the bucket holds (workspaces ``env:/<W>/…`` and the first folder under
the key prefix, see :meth:`Target.env_of`) plus a made-up one that exists nowhere: a role that
reaches it has a grant wider than any environment (``arn:aws:s3:::bucket/*``).
"""

from __future__ import annotations

from typing import Any

from stateward.s3audit import iameval, policydoc
from stateward.s3audit.awsapi import Clients, Unchecked, call
from stateward.s3audit.model import Recorder
from stateward.s3audit.policydoc import PolicyError, Statement
from stateward.s3audit.target import RoleSpec, Target

_IDS = ("SW-IAM-001", "SW-IAM-002", "SW-IAM-003", "SW-IAM-004")
#: An environment no bucket has: reaching it means a wildcard wider than any environment.
PROBE_ENV = "stateward-audit-probe"
_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject")
_DANGEROUS = (
    ("s3:DeleteObjectVersion", "object"), ("s3:PutBucketPolicy", "bucket"),
    ("s3:DeleteBucketPolicy", "bucket"), ("s3:PutBucketVersioning", "bucket"),
    ("s3:PutLifecycleConfiguration", "bucket"), ("s3:DeleteBucket", "bucket"),
    ("s3:PutEncryptionConfiguration", "bucket"), ("s3:PutBucketPublicAccessBlock", "bucket"),
)  # fmt: skip


def _document(value: Any) -> str | dict[str, Any]:
    return value if isinstance(value, dict | str) else ""


def role_documents(c: Clients, role: RoleSpec) -> tuple[list[tuple[str, Any]], Any | None]:
    """(name, document) of every identity policy of the role, and its boundary's document."""
    iam = c.get("iam")
    got = call("iam:GetRole", iam.get_role, RoleName=role.name)["Role"]
    docs: list[tuple[str, Any]] = []
    for page in call("iam:ListRolePolicies", lambda: list(
            iam.get_paginator("list_role_policies").paginate(RoleName=role.name))):
        for name in page.get("PolicyNames", []):
            doc = call("iam:GetRolePolicy", iam.get_role_policy, RoleName=role.name,
                       PolicyName=name)["PolicyDocument"]
            docs.append((f"inline:{name}", _document(doc)))
    for page in call("iam:ListAttachedRolePolicies", lambda: list(
            iam.get_paginator("list_attached_role_policies").paginate(RoleName=role.name))):
        for att in page.get("AttachedPolicies", []):
            docs.append((str(att["PolicyName"]), _managed(iam, att["PolicyArn"])))
    boundary_arn = got.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    return docs, _managed(iam, boundary_arn) if boundary_arn else None


def _managed(iam: Any, arn: str) -> Any:
    pol = call("iam:GetPolicy", iam.get_policy, PolicyArn=arn)["Policy"]
    ver = call("iam:GetPolicyVersion", iam.get_policy_version, PolicyArn=arn,
               VersionId=pol["DefaultVersionId"])
    return _document(ver["PolicyVersion"]["Document"])


def environments(t: Target) -> dict[str, list[str]]:
    """Environment -> a few of its state keys (and a made-up key for each)."""
    envs: dict[str, list[str]] = {}
    for obj in t.states:
        envs.setdefault(t.env_of(obj.key), []).append(obj.key)
    for role in t.roles:
        if role.env:
            envs.setdefault(role.env, [])
    pre = t.key_prefix.strip("/")
    pre = f"{pre}/" if pre else ""
    wkp = t.workspace_key_prefix.strip("/")
    for env, keys in envs.items():
        del keys[3:]
        keys.append(f"{pre}{env}/terraform.tfstate")
    envs[PROBE_ENV] = [f"{pre}{PROBE_ENV}/terraform.tfstate",
                       f"{wkp}/{PROBE_ENV}/{pre}terraform.tfstate"]
    return envs


def reach(identity: list[Statement], boundary: list[Statement] | None, t: Target,
          keys: list[str]) -> list[str]:
    """Which of GetObject/PutObject the role has on any of ``keys``."""
    out = set()
    for key in keys:
        for action in _OBJECT_ACTIONS:
            answer = iameval.evaluate(identity, action, f"{t.bucket_arn}/{key}", boundary)
            if answer.allowed:
                out.add(action + (" (conditionally)" if answer.conditional else ""))
    return sorted(out)


def analyse(role: RoleSpec, identity: list[Statement], boundary: list[Statement] | None,
            t: Target, rec: Recorder) -> None:
    res = role.arn
    ctx = t.context(role=role.name, prefix=role.env or "<ENV>")
    reached = {env: got for env, keys in environments(t).items()
               if (got := reach(identity, boundary, t, keys))}
    own = {role.env} if role.env else set()
    if not own and len(reached) == 1 and PROBE_ENV not in reached:
        own = set(reached)
    others = sorted(set(reached) - own)
    text = "; ".join(
        f"{'any other environment (wildcard)' if e == PROBE_ENV else e}: {', '.join(reached[e])}"
        for e in others)
    rec.result("SW-IAM-001", res, f"reaches {text}" if others else None, **ctx)
    broad = iameval.broad_allows(identity)
    rec.result("SW-IAM-002", res, f"statement(s) {', '.join(broad)}" if broad else None, **ctx)
    keys = [k for env_keys in environments(t).values() for k in env_keys]
    danger = [
        action for action, kind in _DANGEROUS
        if any(iameval.evaluate(identity, action, arn, boundary).allowed
               for arn in ([t.bucket_arn] if kind == "bucket"
                           else [f"{t.bucket_arn}/{k}" for k in keys]))
    ]
    rec.result("SW-IAM-003", res, f"allowed {', '.join(danger)}" if danger else None, **ctx)


def roles(c: Clients, t: Target, rec: Recorder) -> None:
    if not t.roles:
        rec.not_applicable(_IDS, "iam", "no --role given")
        return
    for role in t.roles:
        try:
            docs, boundary_doc = role_documents(c, role)
        except Unchecked as exc:
            rec.not_checked(_IDS, role.arn, str(exc))
            continue
        identity: list[Statement] = []
        broken = []
        for name, doc in docs:
            try:
                identity += policydoc.parse(doc)
            except PolicyError as exc:
                broken.append(f"{name}: {exc}")
        boundary = None
        if boundary_doc is not None:
            try:
                boundary = policydoc.parse(boundary_doc)
            except PolicyError as exc:
                broken.append(f"permissions boundary: {exc}")
        ctx = t.context(role=role.name)
        rec.result("SW-IAM-004", role.arn, "; ".join(broken) if broken else None, **ctx)
        if broken:
            rec.not_checked(_IDS[:3], role.arn, "a policy document cannot be evaluated")
            continue
        analyse(role, identity, boundary, t, rec)
