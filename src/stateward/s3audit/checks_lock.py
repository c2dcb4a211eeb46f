"""Locking: the DynamoDB lock table (``--lock-table``), and the digests Terraform keeps in it.

``use_lockfile`` locking needs no bucket setting (it relies on S3 conditional writes), so
without ``--lock-table`` there is nothing to check here: reported as not applicable, never
as passed.
"""

from __future__ import annotations

from stateward.s3audit.awsapi import ABSENT, Clients, Unchecked, call
from stateward.s3audit.model import Recorder
from stateward.s3audit.target import Target

_IDS = ("SW-DDB-001", "SW-DDB-002", "SW-DDB-003", "SW-DDB-004")


def _digests(c: Clients, t: Target, rec: Recorder) -> None:
    """Terraform's DynamoDB locking keeps ``<bucket>/<key>-md5`` → Digest per state."""
    ddb = c.get("dynamodb")
    for key, md5 in sorted(t.md5.items()):
        res = f"dynamodb:{t.lock_table}:{t.bucket}/{key}-md5"
        try:
            item = call("dynamodb:GetItem", ddb.get_item, TableName=t.lock_table,
                        Key={"LockID": {"S": f"{t.bucket}/{key}-md5"}}, ConsistentRead=True)
        except Unchecked as exc:
            rec.not_checked("SW-S3-043", res, str(exc))
            continue
        digest = item.get("Item", {}).get("Digest", {}).get("S")
        if digest is None:
            continue  # written before DynamoDB locking, or by use_lockfile: nothing to compare
        rec.result("SW-S3-043", res, None if digest.lower() == md5 else
                   "DynamoDB digest differs from the state's MD5", **t.context(object=key))


def table(c: Clients, t: Target, rec: Recorder) -> None:
    if not t.lock_table:
        rec.not_applicable(_IDS, "locking", "no --lock-table: use_lockfile locking has no "
                           "bucket-side setting to check")
        return
    ddb = c.get("dynamodb")
    res = f"dynamodb:table/{t.lock_table}"
    ctx = t.context()
    try:
        desc = call("dynamodb:DescribeTable", ddb.describe_table, TableName=t.lock_table,
                    absent=("ResourceNotFoundException",))
    except Unchecked as exc:
        rec.not_checked(_IDS, res, str(exc))
        return
    if desc is ABSENT:
        rec.finding("SW-DDB-001", res, "table does not exist", **ctx)
        rec.not_applicable(_IDS[1:], res, "table does not exist")
        return
    tbl = desc["Table"]
    res = tbl.get("TableArn") or res
    attrs = {a["AttributeName"]: a["AttributeType"] for a in tbl.get("AttributeDefinitions", [])}
    hash_keys = [k["AttributeName"] for k in tbl.get("KeySchema", []) if k["KeyType"] == "HASH"]
    good_key = hash_keys == ["LockID"] and attrs.get("LockID") == "S" and len(
        tbl.get("KeySchema", [])) == 1
    rec.result("SW-DDB-001", res, None if good_key else
               f"hash key {hash_keys or 'none'} (needs LockID, type S, no range key)", **ctx)
    sse = tbl.get("SSEDescription") or {}
    cmk = sse.get("Status") in ("ENABLED", "UPDATING") and sse.get("SSEType") == "KMS" and not (
        str(sse.get("KMSMasterKeyArn", "")).endswith(":alias/aws/dynamodb"))
    rec.result("SW-DDB-002", res, None if cmk else "encrypted with the AWS-owned key", **ctx)
    if "DeletionProtectionEnabled" in tbl:
        rec.result("SW-DDB-004", res, None if tbl["DeletionProtectionEnabled"] else
                   "deletion protection off", **ctx)
    else:
        rec.not_checked("SW-DDB-004", res, "dynamodb:DescribeTable: no DeletionProtectionEnabled "
                        "in the answer")
    try:
        cb = call("dynamodb:DescribeContinuousBackups", ddb.describe_continuous_backups,
                  TableName=t.lock_table)
        pitr = cb.get("ContinuousBackupsDescription", {}).get(
            "PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        rec.result("SW-DDB-003", res, None if pitr == "ENABLED" else
                   f"point-in-time recovery: {pitr or 'unknown'}", **ctx)
    except Unchecked as exc:
        rec.not_checked("SW-DDB-003", res, str(exc))
    if good_key:
        _digests(c, t, rec)
    else:
        rec.not_applicable("SW-S3-043", res, "no LockID key: Terraform keeps no digests here")
