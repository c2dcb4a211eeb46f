"""A catalog of state buckets built in moto: one fully hardened, and variants that each break
one setting (``BREAKS``). Objects are written before the bucket policy is attached and
moto's policy evaluation is relaxed (tests/harness/s3audit_moto.py), see the MOTO notes in
docs/s3-audit.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENVS = ("dev", "prod")
STATE = {
    "version": 4, "terraform_version": "1.11.4", "serial": 1, "lineage": "l-1",
    "outputs": {"region": {"value": "eu-west-1", "type": "string"}}, "resources": [],
}  # fmt: skip


def client(service: str, url: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=url,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def state_body(env: str, **outputs: str) -> bytes:
    doc = json.loads(json.dumps(STATE))
    doc["lineage"] = f"lineage-{env}"
    for name, value in outputs.items():
        doc["outputs"][name] = {"value": value, "type": "string"}
    return (json.dumps(doc, indent=2) + "\n").encode()


def deny(sid: str, action: str, resources: list[str], cond: dict[str, Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": action,
            "Resource": resources, "Condition": cond}


@dataclass
class Built:
    bucket: str
    key_arn: str
    table: str
    roles: dict[str, str] = field(default_factory=dict)
    other_key_arn: str = ""


def _key_policy(roles: list[str], extra: list[dict[str, Any]], role_actions: Any) -> str:
    stmts: list[dict[str, Any]] = [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "StateRoles", "Effect": "Allow", "Principal": {"AWS": roles},
         "Action": role_actions, "Resource": "*"},
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": stmts + extra})


def _role_policy(bucket: str, env: str, key_arn: str, breaks: frozenset[str]) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}"
    objects = f"{arn}/*" if "role-wildcard" in breaks and env == "dev" else f"{arn}/{env}/*"
    stmts: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": arn,
         "Condition": {"StringLike": {"s3:prefix": f"{env}/*"}}},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": objects},
        {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": key_arn},
    ]
    if env == "dev" and "role-notaction" in breaks:
        stmts.append({"Sid": "Broad", "Effect": "Allow", "NotAction": "s3:Delete*",
                      "Resource": f"{arn}/{env}/*"})
    if env == "dev" and "role-delete-versions" in breaks:
        stmts.append({"Effect": "Allow", "Action": "s3:DeleteObjectVersion",
                      "Resource": f"{arn}/{env}/*"})
    return {"Version": "2012-10-17", "Statement": stmts}


def build(url: str, name: str, breaks: frozenset[str] = frozenset()) -> Built:
    s3, kms, iam, ddb = (client(s, url) for s in ("s3", "kms", "iam", "dynamodb"))
    bucket, logs, table = f"{name}-state", f"{name}-logs", f"{name}-locks"
    key_arn = kms.create_key(Description=name)["KeyMetadata"]["Arn"]
    other = kms.create_key(Description=f"{name} other")["KeyMetadata"]["Arn"]
    if "rotation-off" not in breaks:
        kms.enable_key_rotation(KeyId=key_arn)
    # roles (their policies need the key; the key policy needs them)
    assume = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
    built = Built(bucket, key_arn, table, other_key_arn=other)
    for env in ENVS:
        role = f"{name}-{env}"
        built.roles[env] = iam.create_role(RoleName=role, AssumeRolePolicyDocument=assume)[
            "Role"]["Arn"]
        iam.put_role_policy(RoleName=role, PolicyName="state", PolicyDocument=json.dumps(
            _role_policy(bucket, env, key_arn, breaks)))
    extra = [{"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"},
              "Action": "kms:Decrypt", "Resource": "*"}] if "key-wildcard" in breaks else []
    actions = "kms:*" if "key-role-excess" in breaks else ["kms:GenerateDataKey", "kms:Decrypt"]
    kms.put_key_policy(KeyId=key_arn, PolicyName="default",
                       Policy=_key_policy(sorted(built.roles.values()), extra, actions))
    # log bucket
    s3.create_bucket(Bucket=logs)
    s3.put_bucket_policy(Bucket=logs, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{logs}/*"}]}))
    # state bucket
    lock = "no-object-lock" not in breaks and "versioning-off" not in breaks
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=lock)
    if "versioning-off" not in breaks:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if lock:
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}})
    default: dict[str, Any] = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    if "sse-s3" in breaks:
        default = {"SSEAlgorithm": "AES256"}
    elif "aws-managed-key" in breaks:
        default = {"SSEAlgorithm": "aws:kms"}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": default,
        "BucketKeyEnabled": "no-bucket-key" not in breaks}]})
    rule: dict[str, Any] = {"ID": "keep", "Status": "Enabled", "Filter": {"Prefix": ""},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}
    if "short-noncurrent" in breaks:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": 7}
    if "expires-current" in breaks:
        rule["Expiration"] = {"Days": 365}
    if "no-lifecycle" not in breaks:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": [rule]})
    pab = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
           "RestrictPublicBuckets": "bucket-pab-off" not in breaks}
    ownership = "ObjectWriter" if "public-object-acl" in breaks else (
        "BucketOwnerPreferred" if "ownership-preferred" in breaks else "BucketOwnerEnforced")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": ownership}]})
    if "no-logging" not in breaks:
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": logs, "TargetPrefix": f"{bucket}/"}})
    if "replicated" in breaks:
        s3.create_bucket(Bucket=f"{name}-replica")
        s3.put_bucket_versioning(Bucket=f"{name}-replica",
                                 VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
            "Role": f"arn:aws:iam::{ACCOUNT}:role/replication", "Rules": [{
                "ID": "all", "Status": "Enabled", "Priority": 1, "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Disabled"},
                "Destination": {"Bucket": f"arn:aws:s3:::{name}-replica"}}]})
    # objects, written before the policy (moto would refuse them after it)
    digests = {}
    for env in ENVS:
        extra_out = {"db_password_hint": "AKIAIOSFODNN7EXAMPLE"} if (
            env == "prod" and "secret-in-state" in breaks) else {}
        body = state_body(env, **extra_out)
        obj_key = other if (env == "prod" and "object-other-key" in breaks) else key_arn
        s3.put_object(Bucket=bucket, Key=f"{env}/terraform.tfstate", Body=body,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=obj_key,
                      **({"ACL": "public-read"} if env == "dev" and "public-object-acl" in breaks
                         else {}))
        digests[env] = hashlib.md5(body).hexdigest()
    if "empty-state" in breaks:
        s3.put_object(Bucket=bucket, Key="dev/empty/terraform.tfstate", Body=b"",
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    if "huge-state" in breaks:
        s3.put_object(Bucket=bucket, Key="dev/huge/terraform.tfstate", Body=b"{" + b" " * 8192,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    if "stale-lock" in breaks or "fresh-lock" in breaks:
        s3.put_object(Bucket=bucket, Key="dev/terraform.tfstate.tflock", Body=b'{"ID":"x"}',
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
        if "stale-lock" in breaks:
            backdate(bucket, "dev/terraform.tfstate.tflock", hours=48)
    if "md5-object-mismatch" in breaks:
        s3.put_object(Bucket=bucket, Key="dev/terraform.tfstate-md5", Body=b"0" * 32,
                      ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    _table(ddb, bucket, table, key_arn, breaks, digests)
    if "public-object-acl" not in breaks:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=pab)
    else:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            k: False for k in pab})
    s3.put_bucket_policy(Bucket=bucket, Policy=bucket_policy(bucket, key_arn, breaks))
    if "key-disabled" in breaks:
        kms.disable_key(KeyId=key_arn.rsplit("/", 1)[-1])  # moto wants the id here
    if "key-pending-deletion" in breaks:
        kms.schedule_key_deletion(KeyId=key_arn.rsplit("/", 1)[-1], PendingWindowInDays=7)
    return built


def bucket_policy(bucket: str, key_arn: str, breaks: frozenset[str]) -> str:
    if "malformed-policy" in breaks:
        return json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Permit", "Principal": "*", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    arn = f"arn:aws:s3:::{bucket}"
    stmts = []
    if "no-tls-deny" not in breaks:
        stmts.append(deny("TLS", "s3:*", [arn, f"{arn}/*"],
                          {"Bool": {"aws:SecureTransport": "false"}}))
    if "no-kms-put-deny" not in breaks:
        stmts.append(deny("KMS", "s3:PutObject", [f"{arn}/*"], {"StringNotEquals": {
            "s3:x-amz-server-side-encryption": "aws:kms"}}))
    if "no-other-key-deny" not in breaks:
        stmts.append(deny("Key", "s3:PutObject", [f"{arn}/*"], {"StringNotEqualsIfExists": {
            "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}}))
    if "public-principal" in breaks:
        stmts.append({"Sid": "Public", "Effect": "Allow", "Principal": "*",
                      "Action": "s3:GetObject", "Resource": f"{arn}/*"})
    if "foreign-account" in breaks:
        stmts.append({"Sid": "Partner", "Effect": "Allow",
                      "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                      "Action": "s3:GetObject", "Resource": f"{arn}/*"})
    return json.dumps({"Version": "2012-10-17", "Statement": stmts})


def _table(ddb: Any, bucket: str, table: str, key_arn: str, breaks: frozenset[str],
           digests: dict[str, str]) -> None:
    if "no-lock-table" in breaks:
        return
    key = "id" if "lock-table-bad-key" in breaks else "LockID"
    kw: dict[str, Any] = {}
    if "ddb-no-cmk" not in breaks:
        kw["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                     DeletionProtectionEnabled="ddb-no-deletion-protection" not in breaks, **kw)
    if "ddb-no-pitr" not in breaks:
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
    if key == "LockID":
        for env, digest in digests.items():
            if env == "dev" and "md5-ddb-mismatch" in breaks:
                digest = "f" * 32
            ddb.put_item(TableName=table, Item={
                "LockID": {"S": f"{bucket}/{env}/terraform.tfstate-md5"},
                "Digest": {"S": digest}})


def backdate(bucket: str, key: str, hours: float) -> None:
    """S3 sets LastModified itself; moto's server runs in this process, so reach into its
    backend (the only way to make an old lock object)."""
    from moto.s3.models import s3_backends

    obj = s3_backends[ACCOUNT]["aws"].buckets[bucket].keys[key]
    obj.last_modified = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=hours)
