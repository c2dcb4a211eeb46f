"""The bucket's customer-managed KMS key: state, rotation, and who the key policy lets in."""

from __future__ import annotations

from stateward.s3audit import policydoc
from stateward.s3audit.awsapi import Clients, Unchecked, call
from stateward.s3audit.model import Recorder
from stateward.s3audit.policydoc import PolicyError, Statement
from stateward.s3audit.target import Target

_IDS = ("SW-KMS-001", "SW-KMS-002", "SW-KMS-003", "SW-KMS-004")
#: What a state role may do with the key: S3 asks for a data key on PutObject and decrypts it
#: on GetObject. Nothing else.
STATE_ROLE_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
_PROBES = (
    "kms:Encrypt", "kms:ReEncryptFrom", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion",
    "kms:DisableKey", "kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext",
)  # fmt: skip


def wildcard_statements(stmts: list[Statement]) -> list[str]:
    """Allow statements open to any principal without a restricting condition on the
    caller's account (``kms:CallerAccount``/``aws:PrincipalAccount``/org id)."""
    out = []
    for i, st in enumerate(stmts):
        if st.effect != "Allow":
            continue
        if st.not_principal or "*" in st.aws_principals():
            keys = {k for body in st.condition.values() for k in body}
            if not keys & {"kms:calleraccount", "aws:principalaccount", "aws:principalorgid",
                           "aws:principalarn"}:
                out.append(st.sid or f"#{i}")
    return out


def excess_actions(stmts: list[Statement], role_arn: str) -> list[str]:
    """Actions beyond :data:`STATE_ROLE_ACTIONS` that the key policy allows ``role_arn``."""
    extra = set()
    for st in stmts:
        if st.effect != "Allow" or role_arn not in st.aws_principals():
            continue
        for probe in _PROBES:
            if st.matches_action(probe):
                extra.add(probe)
    return sorted(extra)


def key(c: Clients, t: Target, rec: Recorder) -> None:
    if t.key_arn is None:
        rec.not_applicable(_IDS, t.bucket_arn, "no customer-managed default key to check")
        return
    res = t.key_arn
    ctx = t.context()
    kms = c.get("kms")
    try:
        meta = call("kms:DescribeKey", kms.describe_key, KeyId=t.key_arn)["KeyMetadata"]
        state = meta.get("KeyState", "?")
        rec.result("SW-KMS-004", res, None if state == "Enabled" else f"key state: {state}",
                   **ctx)
    except Unchecked as exc:
        rec.not_checked("SW-KMS-004", res, str(exc))
    try:
        rot = call("kms:GetKeyRotationStatus", kms.get_key_rotation_status, KeyId=t.key_arn)
        rec.result("SW-KMS-001", res, None if rot.get("KeyRotationEnabled")
                   else "automatic rotation disabled", **ctx)
    except Unchecked as exc:
        rec.not_checked("SW-KMS-001", res, str(exc))
    try:
        doc = call("kms:GetKeyPolicy", kms.get_key_policy, KeyId=t.key_arn,
                   PolicyName="default")["Policy"]
    except Unchecked as exc:
        rec.not_checked(("SW-KMS-002", "SW-KMS-003"), res, str(exc))
        return
    try:
        stmts = policydoc.parse(doc)
    except PolicyError as exc:
        rec.finding("SW-KMS-002", res, f"key policy cannot be evaluated: {exc}", **ctx)
        rec.not_checked("SW-KMS-003", res, "key policy cannot be evaluated")
        return
    wild = wildcard_statements(stmts)
    rec.result("SW-KMS-002", res, f"statement(s) {', '.join(wild)} allow any principal"
               if wild else None, **ctx)
    if not t.roles:
        rec.not_applicable("SW-KMS-003", res, "no --role given")
        return
    for role in t.roles:
        extra = excess_actions(stmts, role.arn)
        rec.result("SW-KMS-003", f"{res} ({role.name})",
                   f"{role.name} is also allowed {', '.join(extra)}" if extra else None,
                   **ctx, role=role.name)
