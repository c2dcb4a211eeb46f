"""Bucket-wide settings: versioning, lifecycle, default encryption, Public Access Block,
object ownership and ACL, access logging / CloudTrail data events, replication."""

from __future__ import annotations

from typing import Any

from stateward.s3audit.awsapi import ABSENT, Clients, Unchecked, call
from stateward.s3audit.model import Recorder
from stateward.s3audit.target import MIN_RECOVERY_DAYS, Target

_PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
_PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)


def versioning(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    try:
        v = call("s3:GetBucketVersioning", c.s3.get_bucket_versioning, Bucket=t.bucket)
    except Unchecked as exc:
        rec.not_checked(("SW-S3-001", "SW-S3-002"), res, str(exc))
        return
    status = v.get("Status") or "never enabled"
    rec.result("SW-S3-001", res, None if status == "Enabled" else f"versioning: {status}",
               **t.context())
    if v.get("MFADelete") == "Enabled":
        rec.passed("SW-S3-002", res)
        return
    try:
        lock = call("s3:GetObjectLockConfiguration", c.s3.get_object_lock_configuration,
                    Bucket=t.bucket, absent=("ObjectLockConfigurationNotFoundError",))
    except Unchecked as exc:
        rec.not_checked("SW-S3-002", res, str(exc))
        return
    enabled = lock is not ABSENT and (
        lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    )
    rec.result("SW-S3-002", res, None if enabled else "no MFA delete, no Object Lock",
               **t.context())


def _days(rule: dict[str, Any], block: str, field: str) -> int | None:
    value = rule.get(block, {}).get(field)
    return value if isinstance(value, int) else None


def _covers_states(rule: dict[str, Any], t: Target) -> bool:
    """Whether a rule's filter can apply to the state objects: no prefix, or a prefix that
    overlaps the key prefix or any state key (tag and size filters might match them too, so
    only a prefix rules a rule out)."""
    filt = rule.get("Filter", {}) or {}
    prefix = filt.get("Prefix", filt.get("And", {}).get("Prefix", rule.get("Prefix", ""))) or ""
    if not prefix:
        return True
    pre = t.key_prefix.strip("/")
    overlaps = bool(pre) and (pre.startswith(prefix) or prefix.startswith(pre))
    return overlaps or any(s.key.startswith(prefix) for s in t.states)


def lifecycle(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    ids = ("SW-S3-003", "SW-S3-004", "SW-S3-005")
    try:
        lc = call("s3:GetBucketLifecycleConfiguration",
                  c.s3.get_bucket_lifecycle_configuration, Bucket=t.bucket,
                  absent=("NoSuchLifecycleConfiguration",))
    except Unchecked as exc:
        rec.not_checked(ids, res, str(exc))
        return
    rules = [] if lc is ABSENT else [
        r for r in lc.get("Rules", []) if r.get("Status") == "Enabled" and _covers_states(r, t)
    ]
    bounded = [r for r in rules if _days(r, "NoncurrentVersionExpiration", "NoncurrentDays")]
    rec.result("SW-S3-003", res, None if bounded else "no enabled rule expires noncurrent "
               "versions of the states", **t.context())
    short = sorted(
        d for r in bounded
        if (d := _days(r, "NoncurrentVersionExpiration", "NoncurrentDays")) is not None
        and d < MIN_RECOVERY_DAYS
    )
    rec.result("SW-S3-004", res, f"noncurrent versions expire after {short[0]} day(s)"
               if short else None, **t.context())
    current = [
        r.get("ID") or "(no id)" for r in rules
        if r.get("Expiration", {}).get("Days") or r.get("Expiration", {}).get("Date")
        or r.get("Transitions")
    ]
    rec.result("SW-S3-005", res, f"rule(s) {', '.join(map(str, current))} expire or "
               "transition current objects" if current else None, **t.context())


def encryption(c: Clients, t: Target, rec: Recorder) -> None:
    """Also learns the bucket's key (``t.key_arn``) for the key and object checks."""
    res = t.bucket_arn
    ids = ("SW-S3-010", "SW-S3-011", "SW-S3-012")
    try:
        enc = call("s3:GetBucketEncryption", c.s3.get_bucket_encryption, Bucket=t.bucket,
                   absent=("ServerSideEncryptionConfigurationNotFoundError",))
    except Unchecked as exc:
        rec.not_checked(ids, res, str(exc))
        return
    rules = [] if enc is ABSENT else enc.get("ServerSideEncryptionConfiguration", {}).get(
        "Rules", [])
    rule = rules[0] if rules else {}
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    algo = default.get("SSEAlgorithm") or "none"
    if algo not in ("aws:kms", "aws:kms:dsse"):
        rec.finding("SW-S3-010", res, f"default encryption: {algo}", **t.context())
        rec.not_applicable(("SW-S3-011", "SW-S3-012"), res, "bucket is not SSE-KMS")
        return
    rec.passed("SW-S3-010", res)
    key = default.get("KMSMasterKeyID") or "aws/s3 (no key named)"
    try:
        kms = c.get("kms")
        meta = call("kms:DescribeKey", kms.describe_key, KeyId=key)["KeyMetadata"] \
            if default.get("KMSMasterKeyID") else {"KeyManager": "AWS"}
    except Unchecked as exc:
        rec.not_checked("SW-S3-011", res, str(exc))
        meta = None
    if meta is not None:
        if meta.get("Arn"):
            t.key_arn = str(meta["Arn"])
        managed = meta.get("KeyManager") == "AWS"
        rec.result("SW-S3-011", res, f"default key is AWS-managed ({key})" if managed else None,
                   **t.context())
        if managed:
            t.key_arn = None
    bucket_key = bool(rule.get("BucketKeyEnabled"))
    rec.result("SW-S3-012", res, None if bucket_key else "BucketKeyEnabled is false",
               **t.context())


def _all_on(cfg: dict[str, Any]) -> list[str]:
    return [flag for flag in _PAB_FLAGS if not cfg.get(flag)]


def public_access(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    try:
        pab = call("s3:GetPublicAccessBlock", c.s3.get_public_access_block, Bucket=t.bucket,
                   absent=("NoSuchPublicAccessBlockConfiguration",))
        off = list(_PAB_FLAGS) if pab is ABSENT else _all_on(
            pab.get("PublicAccessBlockConfiguration", {}))
        rec.result("SW-S3-030", res, f"off: {', '.join(off)}" if off else None, **t.context())
    except Unchecked as exc:
        rec.not_checked("SW-S3-030", res, str(exc))
    if t.account is None:
        rec.not_checked("SW-S3-031", "account", "account id unknown (sts:GetCallerIdentity)")
        return
    acct = f"arn:aws:s3:::account/{t.account}"
    try:
        pab = call("s3control:GetPublicAccessBlock", c.get("s3control").get_public_access_block,
                   AccountId=t.account, absent=("NoSuchPublicAccessBlockConfiguration",))
        off = list(_PAB_FLAGS) if pab is ABSENT else _all_on(
            pab.get("PublicAccessBlockConfiguration", {}))
        rec.result("SW-S3-031", acct, f"off: {', '.join(off)}" if off else None, **t.context())
    except Unchecked as exc:
        rec.not_checked("SW-S3-031", acct, str(exc))


def public_grants(acl: dict[str, Any]) -> list[str]:
    """The public groups an ACL grants to (with the permission)."""
    out = []
    for grant in acl.get("Grants", []):
        uri = grant.get("Grantee", {}).get("URI", "")
        if uri in _PUBLIC_GROUPS:
            out.append(f"{uri.rsplit('/', 1)[-1]}:{grant.get('Permission')}")
    return out


def ownership(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    try:
        own = call("s3:GetBucketOwnershipControls", c.s3.get_bucket_ownership_controls,
                   Bucket=t.bucket, absent=("OwnershipControlsNotFoundError",))
        rules = [] if own is ABSENT else own.get("OwnershipControls", {}).get("Rules", [])
        mode = rules[0].get("ObjectOwnership") if rules else "not set (ACLs on)"
        rec.result("SW-S3-032", res, None if mode == "BucketOwnerEnforced"
                   else f"object ownership: {mode}", **t.context())
    except Unchecked as exc:
        rec.not_checked("SW-S3-032", res, str(exc))
    try:
        acl = call("s3:GetBucketAcl", c.s3.get_bucket_acl, Bucket=t.bucket)
        grants = public_grants(acl)
        rec.result("SW-S3-033", res, f"bucket ACL grants {', '.join(grants)}" if grants
                   else None, **t.context())
    except Unchecked as exc:
        rec.not_checked("SW-S3-033", res, str(exc))


def _trail_covers(selectors: dict[str, Any], bucket_arn: str) -> bool:
    for sel in selectors.get("EventSelectors", []) or []:
        for dr in sel.get("DataResources", []) or []:
            if dr.get("Type") == "AWS::S3::Object" and any(
                v in ("arn:aws:s3", "arn:aws:s3:::") or v.startswith(bucket_arn + "/")
                or v == bucket_arn + "/" for v in dr.get("Values", [])
            ):
                return True
    for sel in selectors.get("AdvancedEventSelectors", []) or []:
        fields = {f.get("Field"): f for f in sel.get("FieldSelectors", [])}
        if fields.get("eventCategory", {}).get("Equals") == ["Data"] and "AWS::S3::Object" in (
            fields.get("resources.type", {}).get("Equals") or []
        ):
            arns = fields.get("resources.ARN", {})
            if not arns or any(
                v.startswith(bucket_arn) for v in arns.get("StartsWith", []) + arns.get(
                    "Equals", [])
            ):
                return True
    return False


def logging(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    reasons = []
    try:
        log = call("s3:GetBucketLogging", c.s3.get_bucket_logging, Bucket=t.bucket)
        if log.get("LoggingEnabled", {}).get("TargetBucket"):
            rec.passed("SW-S3-050", res)
            return
    except Unchecked as exc:
        reasons.append(str(exc))
    try:
        ct = c.get("cloudtrail")
        trails = call("cloudtrail:DescribeTrails", ct.describe_trails)
        for trail in trails.get("trailList", []):
            arn = trail.get("TrailARN") or trail.get("Name")
            status = call("cloudtrail:GetTrailStatus", ct.get_trail_status, Name=arn)
            if not status.get("IsLogging"):
                continue
            sel = call("cloudtrail:GetEventSelectors", ct.get_event_selectors, TrailName=arn)
            if _trail_covers(sel, t.bucket_arn):
                rec.passed("SW-S3-050", res)
                return
    except Unchecked as exc:
        reasons.append(str(exc))
    if reasons:
        rec.not_checked("SW-S3-050", res, "; ".join(reasons))
    else:
        rec.finding("SW-S3-050", res, "no access logging; no logging trail with S3 data "
                    "events for this bucket", **t.context())


def replication(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    try:
        rep = call("s3:GetBucketReplication", c.s3.get_bucket_replication, Bucket=t.bucket,
                   absent=("ReplicationConfigurationNotFoundError",))
    except Unchecked as exc:
        rec.not_checked("SW-S3-051", res, str(exc))
        return
    if rep is ABSENT:
        rec.passed("SW-S3-051", res)
        return
    dests = sorted({
        r.get("Destination", {}).get("Bucket", "?")
        for r in rep.get("ReplicationConfiguration", {}).get("Rules", [])
    })
    rec.finding("SW-S3-051", res, f"replicated to {', '.join(dests)}", **t.context())
