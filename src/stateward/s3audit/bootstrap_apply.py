"""``stateward s3 bootstrap --apply``: create the hardened backend directly with boto3.

For teams with no Terraform to bootstrap from. Idempotent: every setting is read first and
written only when it differs, so a second run changes nothing and says so. Afterwards the
``import {}`` blocks (:func:`import_blocks`) let Terraform adopt what was created.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stateward.s3audit import bootstrap_docs as docs
from stateward.s3audit.awsapi import ABSENT, Clients, call
from stateward.s3audit.bootstrap_plan import LOCK_DAYS, LOG_RETENTION_DAYS, NONCURRENT_DAYS, Plan
from stateward.s3audit.hclwrite import Block, Raw, document

_PAB = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True}


@dataclass
class Applied:
    account: str = ""
    key_arn: str = ""
    #: (what, "created" | "updated" | "unchanged")
    steps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(state != "unchanged" for _, state in self.steps)


def _norm(value: Any) -> Any:
    """Policies compare as data, not text (AWS reorders and reformats them)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.loads(json.dumps(value, sort_keys=True))


def _ensure(out: Applied, what: str, current: Any, want: Any, put: Callable[[], Any]) -> None:
    if current is not ABSENT and _norm(current) == _norm(want):
        out.steps.append((what, "unchanged"))
        return
    put()
    out.steps.append((what, "created" if current is ABSENT else "updated"))


def _get(api: str, fn: Callable[..., Any], absent: tuple[str, ...], pick: Callable[[Any], Any],
         **kw: Any) -> Any:
    got = call(api, fn, absent=absent, **kw)
    return ABSENT if got is ABSENT else pick(got)


def _key(c: Clients, plan: Plan, out: Applied) -> None:
    kms = c.get("kms")
    found = call("kms:DescribeKey", kms.describe_key, KeyId=plan.key_alias,
                 absent=("NotFoundException",))
    if found is ABSENT:
        meta = call("kms:CreateKey", kms.create_key, Description=f"Terraform state in s3://"
                    f"{plan.bucket}", Policy=json.dumps(docs.key_policy(out.account, None)))
        out.key_arn = meta["KeyMetadata"]["Arn"]
        call("kms:CreateAlias", kms.create_alias, AliasName=plan.key_alias,
             TargetKeyId=out.key_arn)
        out.steps.append((f"KMS key {plan.key_alias}", "created"))
    else:
        out.key_arn = found["KeyMetadata"]["Arn"]
        out.steps.append((f"KMS key {plan.key_alias}", "unchanged"))
    rotation = call("kms:GetKeyRotationStatus", kms.get_key_rotation_status,
                    KeyId=out.key_arn)["KeyRotationEnabled"]
    _ensure(out, "KMS key rotation", rotation, True,
            lambda: call("kms:EnableKeyRotation", kms.enable_key_rotation, KeyId=out.key_arn))


def _roles(c: Clients, plan: Plan, out: Applied) -> list[str]:
    iam = c.get("iam")
    arns = []
    for env in plan.envs:
        name = plan.role_name(env)
        got = call("iam:GetRole", iam.get_role, RoleName=name, absent=("NoSuchEntity",))
        if got is ABSENT:
            got = call("iam:CreateRole", iam.create_role, RoleName=name,
                       AssumeRolePolicyDocument=json.dumps(docs.assume_policy(out.account)))
            out.steps.append((f"IAM role {name}", "created"))
        else:
            out.steps.append((f"IAM role {name}", "unchanged"))
        arns.append(got["Role"]["Arn"])
        want = docs.role_policy(plan, env, out.key_arn)
        current = _get("iam:GetRolePolicy", iam.get_role_policy, ("NoSuchEntity",),
                       lambda r: r["PolicyDocument"], RoleName=name,
                       PolicyName=plan.policy_name(env))
        _ensure(out, f"IAM role policy {name}/{plan.policy_name(env)}", current, want,
                lambda n=name, e=env, w=want: call(  # type: ignore[misc]
                    "iam:PutRolePolicy", iam.put_role_policy, RoleName=n,
                    PolicyName=plan.policy_name(e), PolicyDocument=json.dumps(w)))
    return arns


def _bucket(c: Clients, plan: Plan, out: Applied, name: str, *, lock: bool) -> None:
    s3 = c.s3
    exists = call("s3:HeadBucket", s3.head_bucket, Bucket=name, absent=("404", "NoSuchBucket"))
    if exists is ABSENT:
        kw: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": lock}
        if plan.region != "us-east-1":
            kw["CreateBucketConfiguration"] = {"LocationConstraint": plan.region}
        call("s3:CreateBucket", s3.create_bucket, **kw)
    out.steps.append((f"bucket {name}", "created" if exists is ABSENT else "unchanged"))
    _ensure(out, f"{name}: public access block",
            _get("s3:GetPublicAccessBlock", s3.get_public_access_block,
                 ("NoSuchPublicAccessBlockConfiguration",),
                 lambda r: r["PublicAccessBlockConfiguration"], Bucket=name), _PAB,
            lambda: call("s3:PutPublicAccessBlock", s3.put_public_access_block, Bucket=name,
                         PublicAccessBlockConfiguration=_PAB))
    own = [{"ObjectOwnership": "BucketOwnerEnforced"}]
    _ensure(out, f"{name}: object ownership",
            _get("s3:GetBucketOwnershipControls", s3.get_bucket_ownership_controls,
                 ("OwnershipControlsNotFoundError",), lambda r: r["OwnershipControls"]["Rules"],
                 Bucket=name), own,
            lambda: call("s3:PutBucketOwnershipControls", s3.put_bucket_ownership_controls,
                         Bucket=name, OwnershipControls={"Rules": own}))
    _ensure(out, f"{name}: versioning",
            call("s3:GetBucketVersioning", s3.get_bucket_versioning, Bucket=name).get("Status",
                                                                                       ABSENT),
            "Enabled", lambda: call("s3:PutBucketVersioning", s3.put_bucket_versioning,
                                    Bucket=name,
                                    VersioningConfiguration={"Status": "Enabled"}))


def _put_config(c: Clients, out: Applied, what: str, get: tuple[str, str, tuple[str, ...], Any],
                want: Any, put: tuple[str, str, str], name: str) -> None:
    api, method, absent, pick = get
    current = _get(api, getattr(c.s3, method), absent, pick, Bucket=name)
    papi, pmethod, arg = put
    _ensure(out, f"{name}: {what}", current, want,
            lambda: call(papi, getattr(c.s3, pmethod), Bucket=name, **{arg: want}))


def _configure(c: Clients, plan: Plan, out: Applied) -> None:
    b, logs = plan.bucket, plan.log_bucket
    sse = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
        "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": out.key_arn}, "BucketKeyEnabled": True}]}
    enc_get = ("s3:GetBucketEncryption", "get_bucket_encryption",
               ("ServerSideEncryptionConfigurationNotFoundError",),
               lambda r: r["ServerSideEncryptionConfiguration"])
    enc_put = ("s3:PutBucketEncryption", "put_bucket_encryption",
               "ServerSideEncryptionConfiguration")
    _put_config(c, out, "default encryption", enc_get, sse, enc_put, b)
    log_sse = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                          "BucketKeyEnabled": False}]}
    _put_config(c, out, "default encryption", enc_get, log_sse, enc_put, logs)
    lock = {"ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": LOCK_DAYS}}}
    _put_config(c, out, "object lock", ("s3:GetObjectLockConfiguration",
                "get_object_lock_configuration", ("ObjectLockConfigurationNotFoundError",),
                lambda r: _lock_norm(r["ObjectLockConfiguration"])), lock,
                ("s3:PutObjectLockConfiguration", "put_object_lock_configuration",
                 "ObjectLockConfiguration"), b)
    lc_get = ("s3:GetBucketLifecycleConfiguration", "get_bucket_lifecycle_configuration",
              ("NoSuchLifecycleConfiguration",), lambda r: {"Rules": r["Rules"]})
    lc_put = ("s3:PutBucketLifecycleConfiguration", "put_bucket_lifecycle_configuration",
              "LifecycleConfiguration")
    abort = {"DaysAfterInitiation": 7}
    _put_config(c, out, "lifecycle", lc_get, {"Rules": [{
        "ID": "keep-noncurrent-versions", "Status": "Enabled", "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
        "AbortIncompleteMultipartUpload": abort}]}, lc_put, b)
    _put_config(c, out, "lifecycle", lc_get, {"Rules": [{
        "ID": "expire-access-logs", "Status": "Enabled", "Filter": {"Prefix": ""},
        "Expiration": {"Days": LOG_RETENTION_DAYS},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        "AbortIncompleteMultipartUpload": abort}]}, lc_put, logs)
    pol_get = ("s3:GetBucketPolicy", "get_bucket_policy", ("NoSuchBucketPolicy",),
               lambda r: r["Policy"])
    for name, doc in ((logs, docs.log_bucket_policy(plan, out.account)),
                      (b, docs.state_bucket_policy(plan, out.key_arn))):
        current = _get(pol_get[0], getattr(c.s3, pol_get[1]), pol_get[2], pol_get[3],
                       Bucket=name)
        _ensure(out, f"{name}: bucket policy", current, doc,
                lambda n=name, d=doc: call(  # type: ignore[misc]
                    "s3:PutBucketPolicy", c.s3.put_bucket_policy, Bucket=n, Policy=json.dumps(d)))
    logging = {"TargetBucket": logs, "TargetPrefix": f"s3-access/{b}/"}
    _logging(c, out, b, logging)


def _lock_norm(cfg: dict[str, Any]) -> dict[str, Any]:
    """Some endpoints answer ``Years: 0`` next to ``Days``: the same retention."""
    retention = cfg.get("Rule", {}).get("DefaultRetention", {})
    for unit in ("Days", "Years"):
        if retention.get(unit) == 0:
            del retention[unit]
    return cfg


def _logging(c: Clients, out: Applied, bucket: str, want: dict[str, str]) -> None:
    current = call("s3:GetBucketLogging", c.s3.get_bucket_logging, Bucket=bucket).get(
        "LoggingEnabled", ABSENT)
    _ensure(out, f"{bucket}: access logging", current, want,
            lambda: call("s3:PutBucketLogging", c.s3.put_bucket_logging, Bucket=bucket,
                         BucketLoggingStatus={"LoggingEnabled": want}))


def _account_pab(c: Clients, out: Applied) -> None:
    ctl = c.get("s3control")
    current = _get("s3control:GetPublicAccessBlock", ctl.get_public_access_block,
                   ("NoSuchPublicAccessBlockConfiguration",),
                   lambda r: r["PublicAccessBlockConfiguration"], AccountId=out.account)
    _ensure(out, f"account {out.account}: public access block", current, _PAB,
            lambda: call("s3control:PutPublicAccessBlock", ctl.put_public_access_block,
                         AccountId=out.account, PublicAccessBlockConfiguration=_PAB))


def apply(c: Clients, plan: Plan) -> Applied:
    """Create or converge everything; raises awsapi.Unchecked on the first refusal."""
    from stateward.s3audit.awsapi import account_id

    out = Applied(account=account_id(c))
    _key(c, plan, out)
    role_arns = _roles(c, plan, out)
    kms = c.get("kms")
    want = docs.key_policy(out.account, role_arns)
    current = call("kms:GetKeyPolicy", kms.get_key_policy, KeyId=out.key_arn,
                   PolicyName="default")["Policy"]
    _ensure(out, "KMS key policy", current, want,
            lambda: call("kms:PutKeyPolicy", kms.put_key_policy, KeyId=out.key_arn,
                         PolicyName="default", Policy=json.dumps(want)))
    _bucket(c, plan, out, plan.log_bucket, lock=False)
    _bucket(c, plan, out, plan.bucket, lock=True)
    _configure(c, plan, out)
    _account_pab(c, out)
    return out


def import_blocks(plan: Plan, applied: Applied) -> str:
    """``import {}`` blocks for every resource of ``main.tf``."""
    key_id = applied.key_arn.rsplit("/", 1)[-1]
    pairs: list[tuple[str, str]] = [
        ("aws_kms_key.state", key_id), ("aws_kms_alias.state", plan.key_alias),
        ("aws_s3_account_public_access_block.this", applied.account),
    ]
    for name, bucket in (("state", plan.bucket), ("logs", plan.log_bucket)):
        pairs.append((f"aws_s3_bucket.{name}", bucket))
        for rtype in ("versioning", "server_side_encryption_configuration",
                      "public_access_block", "ownership_controls", "lifecycle_configuration",
                      "policy"):
            pairs.append((f"aws_s3_bucket_{rtype}.{name}", bucket))
    pairs += [("aws_s3_bucket_object_lock_configuration.state", plan.bucket),
              ("aws_s3_bucket_logging.state", plan.bucket)]
    for env in plan.envs:
        ident = plan.ident(env)
        pairs += [(f"aws_iam_role.{ident}", plan.role_name(env)),
                  (f"aws_iam_role_policy.{ident}",
                   f"{plan.role_name(env)}:{plan.policy_name(env)}")]
    blocks = [Block("import").attr("to", Raw(to)).attr("id", ident_) for to, ident_ in pairs]
    return document(blocks)
