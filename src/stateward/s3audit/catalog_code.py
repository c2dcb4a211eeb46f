"""The catalog of code checks (``stateward s3 audit --code DIR``): stable ``SW-CODE-…`` IDs.

The same ideas as the live checks, read from the Terraform/OpenTofu files that define the
bucket and use it, so a pull request is stopped before the bucket is weakened.
"""

from __future__ import annotations

from stateward.s3audit.model import Check, Severity

C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW


def code(
    id: str, title: str, sev: Severity, harm: str, why: str, hcl: str,
    checkov: tuple[str, ...] = (),
) -> None:  # fmt: skip
    from stateward.s3audit.catalog import _add

    _add(Check(id, title, sev, "code", why, hcl.strip("\n"), "", checkov, (), harm))


code("SW-CODE-001", "backend \"s3\" does not set encrypt = true", M, "disclosure",
     "Without it Terraform sends no encryption header and relies on the bucket default alone.",
     """
terraform {{
  backend "s3" {{
    encrypt    = true
    kms_key_id = "{key_arn}"
  }}
}}""")
code("SW-CODE-002", "backend \"s3\" names no kms_key_id", L, "disclosure",
     "Without it the state is written with SSE-S3 or the bucket default, not the state key; "
     "a bucket policy that denies other keys then refuses the write.", """
terraform {{
  backend "s3" {{
    kms_key_id = "{key_arn}"
  }}
}}""")
code("SW-CODE-003", "backend \"s3\" has no locking", H, "corruption",
     "Two concurrent applies write over each other's state; use_lockfile (Terraform >= 1.10, "
     "OpenTofu >= 1.10) or a DynamoDB table serializes them.", """
terraform {{
  backend "s3" {{
    use_lockfile = true
  }}
}}""")
code("SW-CODE-004", "Literal AWS credential in the configuration", C, "disclosure",
     "An access_key/secret_key/token literal in code is in every clone and every CI log of "
     "the repository; rotate it and use the credential chain (OIDC, profiles).", """
# remove access_key / secret_key / token: use AWS_PROFILE, OIDC or an instance role
terraform {{
  backend "s3" {{
    # no credentials here
  }}
}}""", ("CKV_AWS_41",))
code("SW-CODE-005", "State bucket has no lifecycle { prevent_destroy = true }", H, "deletion",
     "A stray `terraform destroy` (or a rename) deletes the bucket with every state in it.",
     """
resource "aws_s3_bucket" "state" {{
  bucket = "{bucket}"
  lifecycle {{
    prevent_destroy = true
  }}
}}""")
code("SW-CODE-006", "State bucket has no versioning enabled in code", H, "deletion",
     "Without versions one bad write or delete of a state is final.", """
resource "aws_s3_bucket_versioning" "state" {{
  bucket = aws_s3_bucket.state.id
  versioning_configuration {{
    status = "Enabled"
  }}
}}""", ("CKV_AWS_21",))
code("SW-CODE-007", "State bucket encryption in code is not SSE-KMS with a key", H,
     "disclosure", "SSE-S3 or the aws/s3 key cannot be restricted to the state roles.", """
resource "aws_s3_bucket_server_side_encryption_configuration" "state" {{
  bucket = aws_s3_bucket.state.id
  rule {{
    apply_server_side_encryption_by_default {{
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.state.arn
    }}
    bucket_key_enabled = true
  }}
}}""", ("CKV_AWS_145",))
code("SW-CODE-008", "State bucket encryption in code has no bucket key", L, "disclosure",
     "Every state read and write becomes a KMS call.", """
    bucket_key_enabled = true""")
code("SW-CODE-009", "State bucket has no full Public Access Block in code", H, "disclosure",
     "One public ACL or policy statement would expose every state.", """
resource "aws_s3_bucket_public_access_block" "state" {{
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}}""", ("CKV2_AWS_6",))
code("SW-CODE-010", "State bucket has no BucketOwnerEnforced ownership in code", M,
     "disclosure", "With ACLs on, a writer can grant read on a state to anyone.", """
resource "aws_s3_bucket_ownership_controls" "state" {{
  bucket = aws_s3_bucket.state.id
  rule {{
    object_ownership = "BucketOwnerEnforced"
  }}
}}""", ("CKV2_AWS_65",))
code("SW-CODE-011", "State bucket lifecycle in code does not keep noncurrent versions safely",
     M, "deletion", "No rule bounds the versions, one expires them within 30 days, or one "
     "expires current objects (the live states).", """
resource "aws_s3_bucket_lifecycle_configuration" "state" {{
  bucket = aws_s3_bucket.state.id
  rule {{
    id     = "keep-noncurrent-versions"
    status = "Enabled"
    filter {{}}
    noncurrent_version_expiration {{
      noncurrent_days = 90
    }}
  }}
}}""", ("CKV2_AWS_61",))
code("SW-CODE-012", "State bucket has no access logging in code", M, "detection",
     "Nobody can tell who read or overwrote a state.", """
resource "aws_s3_bucket_logging" "state" {{
  bucket        = aws_s3_bucket.state.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/"
}}""", ("CKV_AWS_18",))
_CODE_POLICY = """
resource "aws_s3_bucket_policy" "state" {{
  bucket = aws_s3_bucket.state.id
  policy = data.aws_iam_policy_document.state_bucket.json  # see `stateward s3 bootstrap`
}}"""
code("SW-CODE-013", "State bucket policy in code does not deny requests without TLS", H,
     "disclosure", "Only the bucket policy can refuse plain-HTTP access.", _CODE_POLICY,
     ("CKV_AWS_379",))
code("SW-CODE-014", "State bucket policy in code does not deny PutObject without aws:kms", M,
     "disclosure", "Default encryption is only a default: a client may ask for SSE-S3.",
     _CODE_POLICY)
code("SW-CODE-015", "State bucket policy in code does not deny PutObject naming another key",
     M, "disclosure", "A writer could encrypt a state under a key it controls.", _CODE_POLICY)
code("SW-CODE-016", "State KMS key in code has no enable_key_rotation = true", M,
     "disclosure", "Rotation limits what one leaked key version protects.", """
resource "aws_kms_key" "state" {{
  enable_key_rotation = true
}}""", ("CKV_AWS_7",))
code("SW-CODE-017", "OpenTofu encryption block is not enforced", M, "disclosure",
     "Without enforced = true OpenTofu silently falls back to writing an unencrypted state.",
     """
terraform {{
  encryption {{
    state {{
      method   = method.aes_gcm.main
      enforced = true
    }}
    plan {{
      method   = method.aes_gcm.main
      enforced = true
    }}
  }}
}}""")
code("SW-CODE-018", "Literal passphrase in an OpenTofu key provider", C, "disclosure",
     "The passphrase in the repository decrypts every state it protects; take it from a "
     "variable fed by a secret store (TF_VAR_…), or use a KMS key provider.", """
variable "state_passphrase" {{
  type      = string
  sensitive = true
}}
terraform {{
  encryption {{
    key_provider "pbkdf2" "main" {{
      passphrase = var.state_passphrase
    }}
  }}
}}""")
code("SW-CODE-019", "File could not be parsed as HCL", H, "detection",
     "A file the audit cannot read cannot be shown to be safe (reported as not checked too).",
     "# fix the syntax: terraform validate")
