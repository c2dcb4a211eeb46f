"""One live audit: the checks in the order their findings depend on each other.

Encryption runs first (it learns the bucket's key, which the key, policy and object checks
compare against), objects before locking (the DynamoDB digests are compared with the MD5 of
the states read).
"""

from __future__ import annotations

from stateward.s3audit import (
    checks_bucket,
    checks_iam,
    checks_kms,
    checks_lock,
    checks_objects,
    checks_policy,
)
from stateward.s3audit.awsapi import Clients, Unchecked, account_id, call
from stateward.s3audit.model import Recorder, Report
from stateward.s3audit.target import Target

ALL_BUCKET_CHECKS = (
    "SW-S3-001", "SW-S3-002", "SW-S3-003", "SW-S3-004", "SW-S3-005", "SW-S3-010", "SW-S3-011",
    "SW-S3-012", "SW-S3-020", "SW-S3-021", "SW-S3-022", "SW-S3-023", "SW-S3-024", "SW-S3-025",
    "SW-S3-030", "SW-S3-031", "SW-S3-032", "SW-S3-033", "SW-S3-050", "SW-S3-051",
)  # fmt: skip


def audit_bucket(clients: Clients, target: Target, report: Report | None = None) -> Report:
    report = report or Report(target.url(target.key_prefix))
    rec = Recorder(report)
    try:
        target.account = account_id(clients)
    except Unchecked:
        target.account = None  # the checks needing it say so one by one
    try:
        call("s3:HeadBucket", clients.s3.head_bucket, Bucket=target.bucket)
    except Unchecked as exc:
        rec.not_checked(ALL_BUCKET_CHECKS, target.bucket_arn, str(exc))
        return report
    checks_bucket.encryption(clients, target, rec)
    checks_bucket.versioning(clients, target, rec)
    checks_objects.objects(clients, target, rec)
    checks_bucket.lifecycle(clients, target, rec)
    checks_kms.key(clients, target, rec)
    checks_policy.bucket_policy(clients, target, rec)
    checks_bucket.public_access(clients, target, rec)
    checks_bucket.ownership(clients, target, rec)
    checks_bucket.logging(clients, target, rec)
    checks_bucket.replication(clients, target, rec)
    checks_lock.table(clients, target, rec)
    checks_iam.roles(clients, target, rec)
    return report
