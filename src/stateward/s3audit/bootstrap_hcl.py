"""``stateward s3 bootstrap``: the hardened Terraform module, as files.

``main.tf`` creates the customer-managed key (rotation on, key policy naming the account
root for administration and the state roles for GenerateDataKey/Decrypt only), the state
bucket (prevent_destroy, versioning, Object Lock in governance mode, SSE-KMS with a bucket
key, the three deny statements, Public Access Block, BucketOwnerEnforced, noncurrent-version
lifecycle, access logging to a log bucket) and one role per environment reaching only its
prefix. ``backends/<env>.tf`` holds each environment's ``backend "s3"`` block
(``use_lockfile``). checkov findings that do not apply are skipped inline, with the reason.
"""

from __future__ import annotations

from stateward.s3audit.bootstrap_plan import (
    KMS_DELETION_WINDOW,
    LOCK_DAYS,
    LOG_RETENTION_DAYS,
    NONCURRENT_DAYS,
    STATE_ROLE_KMS_ACTIONS,
    Plan,
)
from stateward.s3audit.hclwrite import Block, Comment, Raw, document

_ACCOUNT = "data.aws_caller_identity.current.account_id"
_STATE_SKIPS = (
    "CKV_AWS_144:state must stay in its region; replicate only if you audit the replica too",
    "CKV2_AWS_62:event notifications are not needed for a state bucket",
)
_KEY_POLICY_SKIPS = tuple(
    f"{cid}:a key policy's Resource \"*\" means this key only"
    for cid in ("CKV_AWS_111", "CKV_AWS_356", "CKV_AWS_109")
)
_LOG_SKIPS = (
    "CKV_AWS_145:S3 server access logs can only be delivered to SSE-S3 buckets",
    "CKV_AWS_18:this is the access-log bucket; logging it to itself would loop",
    "CKV_AWS_144:access logs need no cross-region replica",
    "CKV2_AWS_62:event notifications are not needed for the access-log bucket",
    "CKV_AWS_143:log retention is handled by the lifecycle rule, not Object Lock",
)


def _skips(block: Block, skips: tuple[str, ...]) -> Block:
    for skip in skips:
        block.comment(f"checkov:skip={skip}")
    return block


def _pab(name: str, bucket_ref: str) -> Block:
    b = Block(f'resource "aws_s3_bucket_public_access_block" "{name}"')
    b.attr("bucket", Raw(bucket_ref))
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        b.attr(flag, True)
    return b


def _ownership(name: str, bucket_ref: str) -> Block:
    b = Block(f'resource "aws_s3_bucket_ownership_controls" "{name}"')
    b.attr("bucket", Raw(bucket_ref))
    b.block("rule", ("object_ownership", "BucketOwnerEnforced"))
    return b


def _versioning(name: str, bucket_ref: str) -> Block:
    b = Block(f'resource "aws_s3_bucket_versioning" "{name}"')
    b.attr("bucket", Raw(bucket_ref))
    b.block("versioning_configuration", ("status", "Enabled"))
    return b


def _statement(doc: Block, sid: str, effect: str, actions: list[str], resources: list[Raw | str],
               principals: tuple[str, list[str | Raw]], *conds: tuple[str, str, list[str | Raw]],
               ) -> None:
    st = doc.block("statement", ("sid", sid), ("effect", effect), ("actions", actions),
                   ("resources", resources))
    st.block("principals", ("type", principals[0]), ("identifiers", principals[1]))
    for test, variable, values in conds:
        st.block("condition", ("test", test), ("variable", variable), ("values", values))


def _key(plan: Plan) -> list[Block]:
    key = Block('resource "aws_kms_key" "state"')
    key.attr("description", f"Terraform state in s3://{plan.bucket}")
    key.attr("enable_key_rotation", True)
    key.attr("deletion_window_in_days", KMS_DELETION_WINDOW)
    key.attr("policy", Raw("data.aws_iam_policy_document.state_key.json"))
    key.block("lifecycle", ("prevent_destroy", True))
    alias = Block('resource "aws_kms_alias" "state"')
    alias.attr("name", plan.key_alias).attr("target_key_id", Raw("aws_kms_key.state.key_id"))
    doc = _skips(Block('data "aws_iam_policy_document" "state_key"'), _KEY_POLICY_SKIPS)
    _statement(doc, "AccountAdministration", "Allow", ["kms:*"], ["*"],
               ("AWS", [Raw(f'"arn:aws:iam::${{{_ACCOUNT}}}:root"')]))
    roles: list[str | Raw] = [Raw(f"aws_iam_role.{plan.ident(e)}.arn") for e in plan.envs]
    _statement(doc, "StateRoles", "Allow", list(STATE_ROLE_KMS_ACTIONS), ["*"], ("AWS", roles))
    return [doc, key, alias]


def _state_bucket(plan: Plan) -> list[Block]:
    ref = "aws_s3_bucket.state.id"
    b = _skips(Block('resource "aws_s3_bucket" "state"'), _STATE_SKIPS)
    b.attr("bucket", plan.bucket).attr("object_lock_enabled", True)
    b.block("lifecycle", ("prevent_destroy", True))
    lock = Block('resource "aws_s3_bucket_object_lock_configuration" "state"')
    lock.attr("bucket", Raw(ref))
    lock.block("rule").block("default_retention", ("mode", "GOVERNANCE"), ("days", LOCK_DAYS))
    sse = Block('resource "aws_s3_bucket_server_side_encryption_configuration" "state"')
    sse.attr("bucket", Raw(ref))
    rule = sse.block("rule")
    rule.attr("bucket_key_enabled", True)
    rule.block("apply_server_side_encryption_by_default", ("sse_algorithm", "aws:kms"),
               ("kms_master_key_id", Raw("aws_kms_key.state.arn")))
    lc = Block('resource "aws_s3_bucket_lifecycle_configuration" "state"')
    lc.attr("bucket", Raw(ref)).attr("depends_on", [Raw("aws_s3_bucket_versioning.state")])
    r = lc.block("rule", ("id", "keep-noncurrent-versions"), ("status", "Enabled"))
    r.block("filter")
    r.block("noncurrent_version_expiration", ("noncurrent_days", NONCURRENT_DAYS))
    r.block("abort_incomplete_multipart_upload", ("days_after_initiation", 7))
    log = Block('resource "aws_s3_bucket_logging" "state"')
    log.attr("bucket", Raw(ref)).attr("target_bucket", Raw("aws_s3_bucket.logs.id"))
    log.attr("target_prefix", f"s3-access/{plan.bucket}/")
    pol = Block('resource "aws_s3_bucket_policy" "state"')
    pol.attr("bucket", Raw(ref)).attr("policy", Raw("data.aws_iam_policy_document.state.json"))
    pol.attr("depends_on", [Raw("aws_s3_bucket_public_access_block.state")])
    doc = Block('data "aws_iam_policy_document" "state"')
    arns: list[Raw | str] = [Raw("aws_s3_bucket.state.arn"), Raw('"${aws_s3_bucket.state.arn}/*"')]
    objects: list[Raw | str] = [Raw('"${aws_s3_bucket.state.arn}/*"')]
    everyone: tuple[str, list[str | Raw]] = ("*", ["*"])
    _statement(doc, "DenyInsecureTransport", "Deny", ["s3:*"], arns, everyone,
               ("Bool", "aws:SecureTransport", ["false"]))
    _statement(doc, "DenyNonKmsPuts", "Deny", ["s3:PutObject"], objects, everyone,
               ("StringNotEquals", "s3:x-amz-server-side-encryption", ["aws:kms"]))
    _statement(doc, "DenyOtherKmsKeys", "Deny", ["s3:PutObject"], objects, everyone,
               ("StringNotEqualsIfExists", "s3:x-amz-server-side-encryption-aws-kms-key-id",
                [Raw("aws_kms_key.state.arn")]))
    account = Block('resource "aws_s3_account_public_access_block" "this"')
    account.comment("account-wide: backs up every bucket's own block")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):
        account.attr(flag, True)
    return [b, _versioning("state", ref), lock, sse, _pab("state", ref),
            _ownership("state", ref), lc, log, doc, pol, account]


def _log_bucket(plan: Plan) -> list[Block]:
    ref = "aws_s3_bucket.logs.id"
    b = _skips(Block('resource "aws_s3_bucket" "logs"'), _LOG_SKIPS)
    b.attr("bucket", plan.log_bucket)
    b.block("lifecycle", ("prevent_destroy", True))
    sse = Block('resource "aws_s3_bucket_server_side_encryption_configuration" "logs"')
    sse.attr("bucket", Raw(ref))
    sse.block("rule").block("apply_server_side_encryption_by_default",
                            ("sse_algorithm", "AES256"))
    lc = Block('resource "aws_s3_bucket_lifecycle_configuration" "logs"')
    lc.attr("bucket", Raw(ref))
    r = lc.block("rule", ("id", "expire-access-logs"), ("status", "Enabled"))
    r.block("filter")
    r.block("expiration", ("days", LOG_RETENTION_DAYS))
    r.block("noncurrent_version_expiration", ("noncurrent_days", 30))
    r.block("abort_incomplete_multipart_upload", ("days_after_initiation", 7))
    doc = Block('data "aws_iam_policy_document" "logs"')
    arns: list[Raw | str] = [Raw("aws_s3_bucket.logs.arn"), Raw('"${aws_s3_bucket.logs.arn}/*"')]
    _statement(doc, "DenyInsecureTransport", "Deny", ["s3:*"], arns, ("*", ["*"]),
               ("Bool", "aws:SecureTransport", ["false"]))
    _statement(doc, "S3ServerAccessLogs", "Allow", ["s3:PutObject"],
               [Raw('"${aws_s3_bucket.logs.arn}/s3-access/*"')],
               ("Service", ["logging.s3.amazonaws.com"]),
               ("StringEquals", "aws:SourceAccount", [Raw(_ACCOUNT)]))
    pol = Block('resource "aws_s3_bucket_policy" "logs"')
    pol.attr("bucket", Raw(ref)).attr("policy", Raw("data.aws_iam_policy_document.logs.json"))
    pol.attr("depends_on", [Raw("aws_s3_bucket_public_access_block.logs")])
    return [b, _versioning("logs", ref), sse, _pab("logs", ref), _ownership("logs", ref), lc,
            doc, pol]


def _roles(plan: Plan) -> list[Block]:
    out = []
    trust = Block('data "aws_iam_policy_document" "assume"')
    trust.comment("Who may assume the state roles: the account's IAM (delegated). Replace with")
    trust.comment("your CI's OIDC provider and subject, one trust policy per environment.")
    st = trust.block("statement", ("actions", ["sts:AssumeRole"]))
    st.block("principals", ("type", "AWS"),
             ("identifiers", [Raw(f'"arn:aws:iam::${{{_ACCOUNT}}}:root"')]))
    out.append(trust)
    for env in plan.envs:
        ident = plan.ident(env)
        role = Block(f'resource "aws_iam_role" "{ident}"')
        role.attr("name", plan.role_name(env))
        role.attr("assume_role_policy", Raw("data.aws_iam_policy_document.assume.json"))
        doc = Block(f'data "aws_iam_policy_document" "state_{ident}"')
        obj = f'"${{aws_s3_bucket.state.arn}}/{env}/'
        lst = doc.block("statement", ("sid", "ListOwnPrefix"), ("actions", ["s3:ListBucket"]),
                        ("resources", [Raw("aws_s3_bucket.state.arn")]))
        lst.block("condition", ("test", "StringLike"), ("variable", "s3:prefix"),
                  ("values", [f"{env}/*"]))
        doc.block("statement", ("sid", "ReadWriteOwnStates"),
                  ("actions", ["s3:GetObject", "s3:PutObject"]), ("resources", [Raw(obj + '*"')]))
        doc.block("statement", ("sid", "ReleaseOwnLocks"), ("actions", ["s3:DeleteObject"]),
                  ("resources", [Raw(obj + '*.tflock"')]))
        doc.block("statement", ("sid", "StateKey"), ("actions", list(STATE_ROLE_KMS_ACTIONS)),
                  ("resources", [Raw("aws_kms_key.state.arn")]))
        pol = Block(f'resource "aws_iam_role_policy" "{ident}"')
        pol.attr("name", plan.policy_name(env)).attr("role", Raw(f"aws_iam_role.{ident}.id"))
        pol.attr("policy", Raw(f"data.aws_iam_policy_document.state_{ident}.json"))
        out += [role, doc, pol]
    return out


def main_tf(plan: Plan) -> str:
    tf = Block("terraform")
    tf.attr("required_version", ">= 1.10")
    tf.block("required_providers").attr(
        "aws", Raw('{ source = "hashicorp/aws", version = ">= 5.0" }'))
    provider = Block('provider "aws"').attr("region", plan.region)
    ident = Block('data "aws_caller_identity" "current"')
    head: list[Block | Comment] = [
        Comment(f"Hardened Terraform state backend for s3://{plan.bucket}, written by"),
        Comment("`stateward s3 bootstrap`; audit it with `stateward s3 audit`."),
        tf, provider, ident,
    ]
    return document([*head, *_key(plan), *_state_bucket(plan), *_log_bucket(plan),
                     *_roles(plan), *_outputs(plan)])


def backend_tf(plan: Plan, env: str, key_arn: str | None = None,
               account: str | None = None) -> str:
    """``key_arn``/``account`` are known after ``--apply``; otherwise placeholders stand in
    (``terraform output`` of the module gives them)."""
    b = Block('backend "s3"')
    b.attr("bucket", plan.bucket).attr("key", plan.state_key(env)).attr("region", plan.region)
    b.attr("workspace_key_prefix", f"{env}/workspaces").attr("encrypt", True)
    b.attr("kms_key_id", key_arn or f"arn:aws:kms:{plan.region}:ACCOUNT_ID:key/KEY_ID")
    b.attr("use_lockfile", True)
    role = f"arn:aws:iam::{account or 'ACCOUNT_ID'}:role/{plan.role_name(env)}"
    b.attr("assume_role", Raw(f"{{ role_arn = {_q(role)} }}"))
    if plan.stateward_endpoint:
        b.attr("endpoints", Raw(f"{{ s3 = {_q(plan.stateward_endpoint)} }}"))
        b.attr("use_path_style", True)
    tf = Block("terraform")
    tf.items.append(b)
    head: list[Block | Comment] = [
        Comment(f"The {env} environment's state: copy into its configuration."),
        Comment("kms_key_id: `terraform output state_key_arn` of the bootstrap module."),
    ]
    return document([*head, tf])


def _q(text: str) -> str:
    from stateward.s3audit.hclwrite import quote

    return quote(text)


def _outputs(plan: Plan) -> list[Block]:
    out = [Block('output "state_key_arn"').attr("value", Raw("aws_kms_key.state.arn"))]
    for env in plan.envs:
        out.append(Block(f'output "role_arn_{plan.ident(env)}"').attr(
            "value", Raw(f"aws_iam_role.{plan.ident(env)}.arn")))
    return out


def files(plan: Plan, key_arn: str | None = None, account: str | None = None) -> dict[str, str]:
    """Relative path -> content of every file of the module."""
    out = {"main.tf": main_tf(plan)}
    for env in plan.envs:
        out[f"backends/{env}.tf"] = backend_tf(plan, env, key_arn, account)
    return out
