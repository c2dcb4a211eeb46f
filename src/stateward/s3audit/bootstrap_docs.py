"""The policy documents of the hardened backend as JSON (for ``--apply``), mirroring the
``aws_iam_policy_document`` data sources that :mod:`bootstrap_hcl` writes."""

from __future__ import annotations

from typing import Any

from stateward.s3audit.bootstrap_plan import STATE_ROLE_KMS_ACTIONS, Plan


def _deny(sid: str, actions: str, resources: list[str], cond: dict[str, Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": actions,
            "Resource": resources, "Condition": cond}


def state_bucket_policy(plan: Plan, key_arn: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{plan.bucket}"
    return {"Version": "2012-10-17", "Statement": [
        _deny("DenyInsecureTransport", "s3:*", [arn, f"{arn}/*"],
              {"Bool": {"aws:SecureTransport": "false"}}),
        _deny("DenyNonKmsPuts", "s3:PutObject", [f"{arn}/*"],
              {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
        _deny("DenyOtherKmsKeys", "s3:PutObject", [f"{arn}/*"],
              {"StringNotEqualsIfExists": {
                  "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}}),
    ]}


def log_bucket_policy(plan: Plan, account: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{plan.log_bucket}"
    return {"Version": "2012-10-17", "Statement": [
        _deny("DenyInsecureTransport", "s3:*", [arn, f"{arn}/*"],
              {"Bool": {"aws:SecureTransport": "false"}}),
        {"Sid": "S3ServerAccessLogs", "Effect": "Allow",
         "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
         "Resource": f"{arn}/s3-access/*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
    ]}


def key_policy(account: str, role_arns: list[str] | None) -> dict[str, Any]:
    """Root administration; the state roles once they exist (a key policy naming a role that
    does not exist yet is refused)."""
    stmts: list[dict[str, Any]] = [
        {"Sid": "AccountAdministration", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*",
         "Resource": "*"},
    ]
    if role_arns:
        stmts.append({"Sid": "StateRoles", "Effect": "Allow",
                      "Principal": {"AWS": sorted(role_arns)},
                      "Action": list(STATE_ROLE_KMS_ACTIONS), "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": stmts}


def assume_policy(account: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "sts:AssumeRole"}]}


def role_policy(plan: Plan, env: str, key_arn: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{plan.bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn,
         "Condition": {"StringLike": {"s3:prefix": f"{env}/*"}}},
        {"Sid": "ReadWriteOwnStates", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"{arn}/{env}/*"},
        {"Sid": "ReleaseOwnLocks", "Effect": "Allow", "Action": "s3:DeleteObject",
         "Resource": f"{arn}/{env}/*.tflock"},
        {"Sid": "StateKey", "Effect": "Allow", "Action": list(STATE_ROLE_KMS_ACTIONS),
         "Resource": key_arn},
    ]}
