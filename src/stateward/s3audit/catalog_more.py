"""The catalog, continued: the KMS key, the state objects, locking, detection and IAM
checks (see :mod:`stateward.s3audit.catalog`)."""

from __future__ import annotations

from stateward.s3audit.catalog import aws
from stateward.s3audit.model import Severity

C, H, M, L, INF = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

# -- KMS key ------------------------------------------------------------------------------------
aws("SW-KMS-001", "KMS key rotation is off", M, "disclosure",
    "Automatic yearly rotation limits how much state one leaked key version protects.", """
resource "aws_kms_key" "state" {{
  enable_key_rotation = true
}}""", "aws kms enable-key-rotation --key-id {key_arn}", ("CKV_AWS_7",),
    ("cmk-backing-key-rotation-enabled",))
aws("SW-KMS-002", "KMS key policy grants a wildcard principal", H, "disclosure",
    "A key usable by any principal adds no protection to the states it encrypts.", """
resource "aws_kms_key_policy" "state" {{
  key_id = "{key_id}"
  # Principal: the account root (administration) and the state roles by ARN; never "*"
  policy = data.aws_iam_policy_document.state_key.json
}}""", "aws kms get-key-policy --key-id {key_arn} --policy-name default  # remove the \"*\" "
    "principal, then: aws kms put-key-policy --key-id {key_arn} --policy-name default "
    "--policy file://key-policy.json", ("CKV_AWS_33",))
aws("SW-KMS-003", "KMS key policy grants a state role more than GenerateDataKey/Decrypt", M,
    "disclosure",
    "A state role needs only kms:GenerateDataKey and kms:Decrypt; more (kms:*, PutKeyPolicy, "
    "ScheduleKeyDeletion) lets a leaked CI credential lock everyone out of the states.", """
statement {{
  sid       = "StateRoles"
  actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
  resources = ["*"]
  principals {{
    type        = "AWS"
    identifiers = ["arn:aws:iam::{account}:role/{role}"]
  }}
}}""", "aws kms put-key-policy --key-id {key_arn} --policy-name default "
    "--policy file://key-policy.json")
aws("SW-KMS-004", "KMS key is disabled or pending deletion", C, "deletion",
    "Every state encrypted under the key becomes unreadable when the key goes; a disabled key "
    "already stops all reads and writes.", """
resource "aws_kms_key" "state" {{
  is_enabled              = true
  deletion_window_in_days = 30
  lifecycle {{
    prevent_destroy = true
  }}
}}""", "aws kms cancel-key-deletion --key-id {key_arn} && aws kms enable-key --key-id {key_arn}",
    ("CKV_AWS_227",), ("kms-cmk-not-scheduled-for-deletion",))

# -- state objects ------------------------------------------------------------------------------
aws("SW-S3-040", "State object not encrypted with the bucket's KMS key", H, "disclosure",
    "An object written before the policy, or with another key or SSE-S3, is outside the state "
    "key's grants.", "# no HCL: rewrite the object once under the bucket's default key",
    "aws s3 cp s3://{bucket}/{object} s3://{bucket}/{object} --sse aws:kms "
    "--sse-kms-key-id {key_arn}", ("CKV_AWS_186",))
aws("SW-S3-041", "State object size is not sane", L, "corruption",
    "An empty state is a torn or truncated write; one above the scan limit is probably not a "
    "state (or needs splitting) and was not scanned for secrets.",
    "# split the configuration, or raise --max-state-bytes to scan it",
    "aws s3api list-object-versions --bucket {bucket} --prefix {object}  # restore a good version")
aws("SW-S3-042", "Stale lock file (.tflock) left behind", M, "corruption",
    "A lock older than the threshold is most likely a crashed run: every plan and apply on "
    "that state waits or fails until it is released.", "# no HCL: release the lock",
    "terraform force-unlock <LOCK_ID>  # the ID is in the lock object's body")
aws("SW-S3-043", "State digest (-md5) does not match the state", M, "corruption",
    "Terraform refuses to use a state whose DynamoDB/-md5 digest differs (\"state data in S3 "
    "does not have the expected content\"); one of the two is stale or the state was changed "
    "behind Terraform's back.", "# no HCL: find which one is right first",
    "aws dynamodb get-item --table-name {table} --key '{{\"LockID\":{{\"S\":\"{bucket}/"
    "{object}-md5\"}}}}'  # compare with the object's MD5, then update the Digest")
aws("SW-S3-044", "Secret stored in clear text inside a state", H, "disclosure",
    "Everyone who can read the state (CI, backups, terraform_remote_state consumers) can read "
    "the secret; rotate it and stop it reaching the state.",
    "# mark outputs sensitive is not enough: move the secret to a secret store\n"
    "# (ephemeral resources / write-only arguments in Terraform >= 1.10), then rotate it",
    "stateward import s3 --bucket {bucket}  # then: stateward state scan PATH (locations only)")

# -- locking ------------------------------------------------------------------------------------
_TABLE = """
resource "aws_dynamodb_table" "lock" {{
  name                        = "{table}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "LockID"
  deletion_protection_enabled = true
  attribute {{
    name = "LockID"
    type = "S"
  }}
  point_in_time_recovery {{
    enabled = true
  }}
  server_side_encryption {{
    enabled     = true
    kms_key_arn = "{key_arn}"
  }}
}}"""
aws("SW-DDB-001", "Lock table is missing or has no LockID string key", H, "corruption",
    "Terraform's DynamoDB locking needs a table whose hash key is the string LockID; without "
    "it every run fails or, worse, runs unlocked.", _TABLE,
    "aws dynamodb describe-table --table-name {table}  # or switch to use_lockfile = true")
aws("SW-DDB-002", "Lock table is not encrypted with a customer-managed KMS key", L,
    "disclosure", "The table holds state digests and lock holders' names; a customer key keeps "
    "it under the same grants as the states.", _TABLE,
    "aws dynamodb update-table --table-name {table} --sse-specification "
    "Enabled=true,SSEType=KMS,KMSMasterKeyId={key_arn}", ("CKV_AWS_119",),
    ("dynamodb-table-encrypted-kms",))
aws("SW-DDB-003", "Lock table has no point-in-time recovery", L, "deletion",
    "Without PITR a deleted or overwritten digest table cannot be restored.", _TABLE,
    "aws dynamodb update-continuous-backups --table-name {table} "
    "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true", ("CKV_AWS_28",),
    ("dynamodb-pitr-enabled",))
aws("SW-DDB-004", "Lock table has no deletion protection", M, "deletion",
    "Deleting the lock table silently turns locking off for every state using it.", _TABLE,
    "aws dynamodb update-table --table-name {table} --deletion-protection-enabled", (),
    ("dynamodb-table-deletion-protection-enabled",))

# -- detection ----------------------------------------------------------------------------------
aws("SW-S3-050", "Neither access logging nor CloudTrail data events cover the bucket", M,
    "detection", "Without either, nobody can tell who read or overwrote a state.", """
resource "aws_s3_bucket_logging" "state" {{
  bucket        = "{bucket}"
  target_bucket = "<LOG_BUCKET>"
  target_prefix = "s3-access/{bucket}/"
}}""", "aws s3api put-bucket-logging --bucket {bucket} --bucket-logging-status "
    "'{{\"LoggingEnabled\":{{\"TargetBucket\":\"<LOG_BUCKET>\",\"TargetPrefix\":"
    "\"s3-access/{bucket}/\"}}}}'", ("CKV_AWS_18",),
    ("s3-bucket-logging-enabled", "cloudtrail-s3-dataevents-enabled"))
aws("SW-S3-051", "Bucket is replicated", INF, "disclosure",
    "Noted, not wrong: every replica holds the states too; its bucket needs the same settings "
    "(audit it as well).", "# audit the destination bucket with `stateward s3 audit` too",
    "aws s3api get-bucket-replication --bucket {bucket}", ("CKV_AWS_144",),
    ("s3-bucket-replication-enabled",))

# -- IAM ----------------------------------------------------------------------------------------
_IAM_HCL = """
data "aws_iam_policy_document" "state_{prefix}" {{
  statement {{
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["arn:aws:s3:::{bucket}/{prefix}/*"]
  }}
  statement {{
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::{bucket}"]
    condition {{
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["{prefix}/*"]
    }}
  }}
}}"""
aws("SW-IAM-001", "Role reaches other environments' states", H, "disclosure",
    "A dev pipeline able to read or write prod's state can take prod over; each environment's "
    "role should reach its own prefix only.", _IAM_HCL,
    "aws iam get-role-policy --role-name {role} --policy-name <POLICY>  # narrow Resource")
aws("SW-IAM-002", "Role policy uses NotAction or NotResource in an Allow", M, "disclosure",
    "An Allow with NotAction/NotResource grants everything not listed, today and every action "
    "AWS adds later; the audit cannot bound what it reaches.", _IAM_HCL,
    "aws iam list-role-policies --role-name {role}")
aws("SW-IAM-003", "Role can delete versions or change the bucket's protections", M, "deletion",
    "s3:DeleteObjectVersion, PutBucketPolicy, PutBucketVersioning, PutLifecycleConfiguration "
    "or DeleteBucket let a state role erase history or switch the protections off.", _IAM_HCL,
    "aws iam list-attached-role-policies --role-name {role}")
aws("SW-IAM-004", "Role policy document cannot be evaluated", M, "disclosure",
    "A policy the audit cannot read (not JSON, unknown Effect) cannot be shown to be least "
    "privilege.", _IAM_HCL, "aws iam list-role-policies --role-name {role}")

