"""The catalog of live-AWS checks: stable IDs, severity, why it matters, how to fix it.

IDs never change meaning and are never reused (docs/s3-audit.md lists them all); the code
checks (``SW-CODE-…``) are in :mod:`stateward.s3audit.catalog_code`. Fix templates use the
placeholders of :data:`PLACEHOLDERS`; anything unknown renders as its ``<NAME>`` form.
"""

from __future__ import annotations

from typing import Final

from stateward.s3audit.model import Check, Severity

C, H, M, L, INF = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO

#: Placeholders a fix template may use, with what stands in when a finding lacks one.
PLACEHOLDERS: Final = {
    "bucket": "<BUCKET>",
    "key_arn": "<KMS_KEY_ARN>",
    "key_id": "<KMS_KEY_ID>",
    "table": "<LOCK_TABLE>",
    "role": "<ROLE_NAME>",
    "region": "<REGION>",
    "account": "<ACCOUNT_ID>",
    "object": "<OBJECT_KEY>",
    "prefix": "<ENV_PREFIX>",
}

CHECKS: dict[str, Check] = {}


def _add(check: Check) -> None:
    assert check.id not in CHECKS, check.id
    CHECKS[check.id] = check


def aws(
    id: str, title: str, sev: Severity, harm: str, why: str, hcl: str, cli: str,
    checkov: tuple[str, ...] = (), config: tuple[str, ...] = (),
) -> None:  # fmt: skip
    _add(Check(id, title, sev, "aws", why, hcl.strip("\n"), cli.strip(), checkov, config, harm))


def render_fix(check: Check, context: dict[str, str]) -> dict[str, str]:
    values = {**PLACEHOLDERS, **context}
    return {
        "hcl": check.fix_hcl.format_map(values),
        "cli": check.fix_cli.format_map(values),
    }


def _deny_hint(sid: str, action: str, cond: str) -> str:
    """A Deny statement as a fix template (``cond`` is template text: ``{{``/``}}`` for
    braces)."""
    return (
        "# in the bucket policy (see `stateward s3 bootstrap` for the whole document):\n"
        "{{\n"
        f'  Sid       = "{sid}"\n'
        '  Effect    = "Deny"\n'
        '  Principal = "*"\n'
        f'  Action    = "{action}"\n'
        '  Resource  = ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]\n'
        f"  Condition = {{{{ {cond} }}}}\n"
        "}}"
    )


_POLICY_CLI = (
    "aws s3api get-bucket-policy --bucket {bucket} --query Policy --output text > p.json"
    "  # add the statement, then: aws s3api put-bucket-policy --bucket {bucket}"
    " --policy file://p.json"
)

# -- versioning and lifecycle -------------------------------------------------------------------
aws("SW-S3-001", "Bucket versioning is not enabled", H, "deletion",
    "Without versions one bad write or delete of a state is final: there is nothing to roll "
    "back to.", """
resource "aws_s3_bucket_versioning" "state" {{
  bucket = "{bucket}"
  versioning_configuration {{
    status = "Enabled"
  }}
}}""", "aws s3api put-bucket-versioning --bucket {bucket} "
    "--versioning-configuration Status=Enabled", ("CKV_AWS_21",),
    ("s3-bucket-versioning-enabled",))
aws("SW-S3-002", "Neither MFA delete nor Object Lock protects the versions", INF, "deletion",
    "Anyone allowed s3:DeleteObjectVersion can erase the history too; MFA delete or Object "
    "Lock (governance mode) makes that a deliberate, separate act.", """
resource "aws_s3_bucket_object_lock_configuration" "state" {{
  bucket = "{bucket}"
  rule {{
    default_retention {{
      mode = "GOVERNANCE"
      days = 30
    }}
  }}
}}""", "aws s3api put-object-lock-configuration --bucket {bucket} --object-lock-configuration "
    "'ObjectLockEnabled=Enabled,Rule={{DefaultRetention={{Mode=GOVERNANCE,Days=30}}}}'",
    ("CKV_AWS_143",), ("s3-bucket-default-lock-enabled",))
_LIFECYCLE = """
resource "aws_s3_bucket_lifecycle_configuration" "state" {{
  bucket = "{bucket}"
  rule {{
    id     = "keep-noncurrent-versions"
    status = "Enabled"
    filter {{}}
    noncurrent_version_expiration {{
      noncurrent_days           = 90
      newer_noncurrent_versions = 100
    }}
    abort_incomplete_multipart_upload {{
      days_after_initiation = 7
    }}
  }}
}}"""
_LIFECYCLE_CLI = (
    "aws s3api put-bucket-lifecycle-configuration --bucket {bucket} --lifecycle-configuration "
    "'{{\"Rules\":[{{\"ID\":\"keep-noncurrent-versions\",\"Status\":\"Enabled\",\"Filter\":{{}},"
    "\"NoncurrentVersionExpiration\":{{\"NoncurrentDays\":90,\"NewerNoncurrentVersions\":100}}}}]}}'"
)
aws("SW-S3-003", "No lifecycle rule bounds the noncurrent versions", L, "deletion",
    "Versions pile up forever (cost, and old secrets kept); a rule that expires them after a "
    "recovery window keeps the history useful and bounded.", _LIFECYCLE, _LIFECYCLE_CLI,
    ("CKV2_AWS_61",), ("s3-version-lifecycle-policy-check",))
aws("SW-S3-004", "Noncurrent versions expire before a 30-day recovery window", M, "deletion",
    "A corruption noticed after the window cannot be rolled back: the good versions are gone.",
    _LIFECYCLE, _LIFECYCLE_CLI, (), ("s3-version-lifecycle-policy-check",))
aws("SW-S3-005", "A lifecycle rule expires or transitions current state objects", H, "deletion",
    "Expiring a current object deletes the live state; archiving it (Glacier) makes it "
    "unreadable to Terraform.", _LIFECYCLE, _LIFECYCLE_CLI)

# -- encryption ---------------------------------------------------------------------------------
_SSE = """
resource "aws_s3_bucket_server_side_encryption_configuration" "state" {{
  bucket = "{bucket}"
  rule {{
    apply_server_side_encryption_by_default {{
      sse_algorithm     = "aws:kms"
      kms_master_key_id = "{key_arn}"
    }}
    bucket_key_enabled = true
  }}
}}"""
_SSE_CLI = (
    "aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration "
    "'{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"aws:kms\","
    "\"KMSMasterKeyID\":\"{key_arn}\"}},\"BucketKeyEnabled\":true}}]}}'"
)
aws("SW-S3-010", "Default encryption is not SSE-KMS", H, "disclosure",
    "With SSE-S3 (AES256) or none, anyone with s3:GetObject reads the states; SSE-KMS adds a "
    "second, separately granted and logged key permission.", _SSE, _SSE_CLI,
    ("CKV_AWS_145", "CKV_AWS_19"), ("s3-default-encryption-kms",))
aws("SW-S3-011", "Default encryption uses the AWS-managed key (aws/s3)", M, "disclosure",
    "The aws/s3 key's policy cannot be restricted: every principal of the account allowed S3 "
    "can decrypt; a customer-managed key lets you name the state roles.", _SSE, _SSE_CLI,
    ("CKV_AWS_145",), ("s3-default-encryption-kms",))
aws("SW-S3-012", "S3 Bucket Key is not enabled", L, "disclosure",
    "Without a bucket key every state read and write is a KMS call (cost, throttling); with "
    "it, KMS CloudTrail events stay meaningful per bucket.", _SSE, _SSE_CLI)

# -- bucket policy ------------------------------------------------------------------------------
aws("SW-S3-020", "Bucket policy does not deny requests without TLS", H, "disclosure",
    "A client or proxy misconfigured to plain HTTP sends the state (and credentials' "
    "signatures) in clear text; only the bucket policy can refuse it.",
    _deny_hint("DenyInsecureTransport", "s3:*",
               'Bool = {{ "aws:SecureTransport" = "false" }}'),
    _POLICY_CLI, ("CKV_AWS_379",), ("s3-bucket-ssl-requests-only",))
aws("SW-S3-021", "Bucket policy does not deny PutObject without aws:kms", M, "disclosure",
    "Default encryption is only a default: a client may ask for SSE-S3 per request unless the "
    "bucket policy refuses it.",
    _deny_hint("DenyNonKmsPuts", "s3:PutObject",
               'StringNotEquals = {{ "s3:x-amz-server-side-encryption" = "aws:kms" }}'),
    _POLICY_CLI)
aws("SW-S3-022", "Bucket policy does not deny PutObject naming another KMS key", M,
    "disclosure",
    "A writer can otherwise encrypt a state under a key it controls, outside the state key's "
    "grants and audit.",
    _deny_hint("DenyOtherKmsKeys", "s3:PutObject",
               'StringNotEqualsIfExists = {{ '
               '"s3:x-amz-server-side-encryption-aws-kms-key-id" = "{key_arn}" }}'),
    _POLICY_CLI)
aws("SW-S3-023", "Bucket policy allows a public principal", C, "disclosure",
    "Principal \"*\" without a restricting condition lets anyone on the internet reach the "
    "states.", """
# remove the statement with Principal = "*" (Effect = "Allow"), or restrict it with
# Condition = {{ StringEquals = {{ "aws:PrincipalAccount" = "{account}" }} }}""",
    "aws s3api get-bucket-policy-status --bucket {bucket}", ("CKV_AWS_70",),
    ("s3-bucket-public-read-prohibited", "s3-bucket-public-write-prohibited"))
aws("SW-S3-024", "Bucket policy grants an untrusted account", H, "disclosure",
    "Another account's principals can read or overwrite the states; list the accounts you "
    "mean with --trusted-account.", """
# remove the principal, or pass --trusted-account for an account you mean to trust""",
    "aws s3api get-bucket-policy --bucket {bucket} --query Policy --output text",
    (), ("s3-bucket-policy-grantee-check",))
aws("SW-S3-025", "Bucket policy cannot be evaluated", H, "disclosure",
    "A policy the audit cannot read (not JSON, unknown Effect, no statements) cannot be shown "
    "to refuse anything.", "# rewrite the policy from `stateward s3 bootstrap`'s module",
    "aws s3api get-bucket-policy --bucket {bucket} --query Policy --output text")

# -- public access and ownership ----------------------------------------------------------------
_PAB = """
resource "aws_s3_bucket_public_access_block" "state" {{
  bucket                  = "{bucket}"
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}}"""
aws("SW-S3-030", "Bucket Public Access Block is not fully on", H, "disclosure",
    "One public ACL or policy statement would expose every state; the four flags refuse both.",
    _PAB, "aws s3api put-public-access-block --bucket {bucket} --public-access-block-"
    "configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,"
    "RestrictPublicBuckets=true", ("CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56",
                                   "CKV2_AWS_6"), ("s3-bucket-level-public-access-prohibited",))
aws("SW-S3-031", "Account Public Access Block is not fully on", M, "disclosure",
    "The account-level block backs up every bucket's, including one someone loosens later.", """
resource "aws_s3_account_public_access_block" "this" {{
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}}""", "aws s3control put-public-access-block --account-id {account} --public-access-block-"
    "configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,"
    "RestrictPublicBuckets=true", (), ("s3-account-level-public-access-blocks-periodic",))
aws("SW-S3-032", "Object ownership is not BucketOwnerEnforced (ACLs are on)", M, "disclosure",
    "With ACLs on, a writer can grant read on a state object to anyone, bypassing the bucket "
    "policy.", """
resource "aws_s3_bucket_ownership_controls" "state" {{
  bucket = "{bucket}"
  rule {{
    object_ownership = "BucketOwnerEnforced"
  }}
}}""", "aws s3api put-bucket-ownership-controls --bucket {bucket} --ownership-controls "
    "Rules=[{{ObjectOwnership=BucketOwnerEnforced}}]", ("CKV2_AWS_65",),
    ("s3-bucket-acl-prohibited",))
aws("SW-S3-033", "A public ACL grant on the bucket or a state object", C, "disclosure",
    "AllUsers or AuthenticatedUsers grants let anyone with an AWS account read the state.",
    "# enforce bucket-owner ownership (SW-S3-032): ACLs then stop applying",
    "aws s3api put-object-acl --bucket {bucket} --key {object} --acl private",
    ("CKV_AWS_20", "CKV_AWS_57", "CKV2_AWS_43"),
    ("s3-bucket-public-read-prohibited", "s3-bucket-public-write-prohibited"))

# imported for their side effect: the other checks join the same catalog
from stateward.s3audit import catalog_code, catalog_more  # noqa: E402, F401
