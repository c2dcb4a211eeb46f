"""The bucket policy as a state backend needs it: three denies, no public or foreign grants.

A deny counts only when it applies to every principal (``"*"``) and to the state objects; the
denies are matched by what they refuse, not by their Sid.
"""

from __future__ import annotations

from stateward.s3audit import policydoc
from stateward.s3audit.awsapi import ABSENT, Clients, Unchecked, call
from stateward.s3audit.model import Recorder
from stateward.s3audit.policydoc import PolicyError, Statement
from stateward.s3audit.target import Target

_DENY_IDS = ("SW-S3-020", "SW-S3-021", "SW-S3-022")
_ALL_IDS = (*_DENY_IDS, "SW-S3-023", "SW-S3-024", "SW-S3-025")
#: Conditions that pin an Allow to known principals or networks: not public.
_RESTRICTING = (
    "aws:principalaccount", "aws:principalorgid", "aws:principalarn", "aws:sourceaccount",
    "aws:sourcearn", "aws:sourcevpce", "aws:sourcevpc", "aws:sourceorgid", "aws:userid",
    "aws:sourceip",
)  # fmt: skip


def _everyone(st: Statement) -> bool:
    return not st.not_principal and "*" in st.aws_principals()


def _denies_objects(st: Statement, t: Target, action: str) -> bool:
    probe = f"{t.bucket_arn}/{t.key_prefix.strip('/') + '/' if t.key_prefix.strip('/') else ''}" \
        "terraform.tfstate"
    return (
        st.effect == "Deny" and _everyone(st) and st.matches_action(action)
        and st.matches_resource(probe)
    )


def denies_insecure_transport(stmts: list[Statement], t: Target) -> bool:
    return any(
        _denies_objects(st, t, "s3:GetObject") and _denies_objects(st, t, "s3:PutObject")
        and (st.condition.get("Bool", {}).get("aws:securetransport") == ("false",))
        for st in stmts
    )


def denies_non_kms_puts(stmts: list[Statement], t: Target) -> bool:
    for st in stmts:
        if not _denies_objects(st, t, "s3:PutObject"):
            continue
        values = policydoc.condition_values(st, "StringNotEquals",
                                            "s3:x-amz-server-side-encryption")
        if values and set(values) <= {"aws:kms", "aws:kms:dsse"}:
            return True
    return False


def denies_other_keys(stmts: list[Statement], t: Target) -> bool:
    for st in stmts:
        if not _denies_objects(st, t, "s3:PutObject"):
            continue
        values = policydoc.condition_values(
            st, "StringNotEquals", "s3:x-amz-server-side-encryption-aws-kms-key-id")
        if values and (t.key_arn is None or t.key_arn in values):
            return True
    return False


def public_statements(stmts: list[Statement]) -> list[str]:
    out = []
    for i, st in enumerate(stmts):
        if st.effect != "Allow":
            continue
        public = st.not_principal or (_everyone(st) and not any(
            key in _RESTRICTING for body in st.condition.values() for key in body))
        if public:
            out.append(st.sid or f"#{i}")
    return out


def foreign_principals(stmts: list[Statement], t: Target) -> list[str]:
    """Principals of Allow statements outside the bucket's account and --trusted-account."""
    trusted = set(t.trusted_accounts) | ({t.account} if t.account else set())
    out: set[str] = set()
    for st in stmts:
        if st.effect != "Allow" or st.principals is None or st.not_principal:
            continue
        for kind, values in st.principals.items():
            if kind in ("*", "Service"):
                continue
            for value in values:
                if value == "*":
                    continue
                account = policydoc.account_of(value) if kind == "AWS" else None
                if account is None or account not in trusted:
                    out.add(f"{kind}:{value}")
    return sorted(out)


def bucket_policy(c: Clients, t: Target, rec: Recorder) -> None:
    res = t.bucket_arn
    ctx = t.context()
    try:
        answer = call("s3:GetBucketPolicy", c.s3.get_bucket_policy, Bucket=t.bucket,
                      absent=("NoSuchBucketPolicy",))
    except Unchecked as exc:
        rec.not_checked(_ALL_IDS, res, str(exc))
        return
    if answer is ABSENT:
        stmts: list[Statement] = []
        rec.passed("SW-S3-025", res)
    else:
        try:
            stmts = policydoc.parse(answer.get("Policy", ""))
        except PolicyError as exc:
            rec.finding("SW-S3-025", res, str(exc), **ctx)
            rec.not_checked(_ALL_IDS[:5], res, "the bucket policy cannot be evaluated")
            return
        rec.passed("SW-S3-025", res)
        t.policy = {"statements": len(stmts)}
    missing = "no bucket policy" if answer is ABSENT else None
    rec.result("SW-S3-020", res, None if denies_insecure_transport(stmts, t)
               else missing or "no Deny for aws:SecureTransport = false on the objects", **ctx)
    rec.result("SW-S3-021", res, None if denies_non_kms_puts(stmts, t)
               else missing or "no Deny of PutObject without aws:kms", **ctx)
    rec.result("SW-S3-022", res, None if denies_other_keys(stmts, t)
               else missing or "no Deny of PutObject naming another KMS key", **ctx)
    public = public_statements(stmts)
    rec.result("SW-S3-023", res, f"statement(s) {', '.join(public)} allow everyone"
               if public else None, **ctx)
    if t.account is None and stmts:
        rec.not_checked("SW-S3-024", res, "account id unknown (sts:GetCallerIdentity)")
        return
    foreign = foreign_principals(stmts, t)
    rec.result("SW-S3-024", res, f"grants {', '.join(foreign)}" if foreign else None, **ctx)
