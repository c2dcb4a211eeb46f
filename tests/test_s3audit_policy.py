"""The pure parts of the S3 audit: policy parsing, the IAM evaluator, the bucket and key
policy analyses, environments of keys, the HCL writer (no AWS, no moto)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stateward.s3audit import checks_kms, checks_policy, hclwrite, iameval, policydoc
from stateward.s3audit.policydoc import PolicyError
from stateward.s3audit.target import RoleSpec, StateObject, Target

B = "arn:aws:s3:::bkt"


def pol(*stmts: dict[str, Any]) -> list[policydoc.Statement]:
    return policydoc.parse({"Version": "2012-10-17", "Statement": list(stmts)})


def allow(action: Any, resource: Any, **kw: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **kw}


@pytest.mark.parametrize("doc, message", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ({"Statement": []}, "no Statement"),
    ({"Statement": [{"Effect": "Permit", "Action": "s3:*"}]}, "Effect"),
    ({"Statement": [{"Effect": "Allow"}]}, "Action / NotAction"),
    ({"Statement": [{"Effect": "Allow", "Action": 3}]}, "neither a string"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Principal": 5}]}, "Principal"),
    ({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Condition": []}]}, "Condition"),
    ({"Statement": ["x"]}, "not an object"),
])  # fmt: skip
def test_malformed_documents_are_refused(doc: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policydoc.parse(doc if isinstance(doc, str) else json.dumps(doc))


def test_url_encoded_document_as_iam_returns_it() -> None:
    from urllib.parse import quote

    text = quote(json.dumps({"Statement": [allow("s3:GetObject", f"{B}/*")]}))
    assert policydoc.parse(text)[0].actions == ("s3:GetObject",)


@given(st.text(max_size=200))
def test_parse_never_crashes(text: str) -> None:
    with contextlib.suppress(PolicyError):
        policydoc.parse(text)


def test_evaluator_wildcards_and_case() -> None:
    stmts = pol(allow("S3:Get*", f"{B}/dev/*"), allow("s3:PutObjec?", f"{B}/dev/*"))
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/dev/terraform.tfstate").allowed
    assert iameval.evaluate(stmts, "s3:PutObject", f"{B}/dev/x").allowed
    assert not iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x").allowed
    assert not iameval.evaluate(stmts, "s3:GetObject", f"{B.upper()}/dev/x").allowed


def test_evaluator_deny_wins_unless_conditioned() -> None:
    stmts = pol(allow("s3:*", f"{B}/*"),
                {"Effect": "Deny", "Action": "s3:*", "Resource": f"{B}/prod/*"},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"{B}/qa/*",
                 "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}})
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x").decision is \
        iameval.Decision.DENIED
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/qa/x").allowed  # conservative


def test_evaluator_not_action_not_resource() -> None:
    stmts = pol({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": f"{B}/dev/*"},
                {"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{B}/prod/*"})
    assert iameval.evaluate(stmts, "s3:PutObject", f"{B}/dev/x").allowed
    assert not iameval.evaluate(stmts, "s3:DeleteObject", f"{B}/dev/x").allowed
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/qa/x").allowed
    assert not iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x").allowed
    assert iameval.broad_allows(stmts) == ["#0", "#1"]


def test_evaluator_conditional_allow_and_boundary() -> None:
    stmts = pol(allow("s3:GetObject", f"{B}/*", Condition={"IpAddress": {
        "aws:SourceIp": "10.0.0.0/8"}}))
    answer = iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x")
    assert answer.allowed and answer.conditional
    boundary = pol(allow("s3:*", f"{B}/dev/*"))
    assert not iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x", boundary).allowed
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/dev/x", boundary).allowed


def test_policy_variables_match_anything() -> None:
    stmts = pol(allow("s3:GetObject", f"{B}/${{aws:username}}/*"))
    assert iameval.evaluate(stmts, "s3:GetObject", f"{B}/prod/x").allowed


def test_role_reach_and_probe_environment() -> None:
    from stateward.s3audit.checks_iam import PROBE_ENV, environments, reach

    t = Target("bkt", roles=(RoleSpec("arn:aws:iam::1:role/r", "dev"),))
    t.states = [StateObject("dev/terraform.tfstate", 1, None),
                StateObject("env:/qa/app/terraform.tfstate", 1, None)]
    envs = environments(t)
    assert set(envs) == {"dev", "qa", PROBE_ENV}
    wide = pol(allow(["s3:GetObject"], f"{B}/*"))
    assert reach(wide, None, t, envs[PROBE_ENV]) == ["s3:GetObject"]
    narrow = pol(allow(["s3:GetObject", "s3:PutObject"], f"{B}/dev/*"))
    assert reach(narrow, None, t, envs["qa"]) == []


def test_env_of() -> None:
    t = Target("b", key_prefix="teams/a")
    assert t.env_of("teams/a/prod/terraform.tfstate") == "prod"
    assert t.env_of("env:/staging/teams/a/net/terraform.tfstate") == "staging"
    assert t.env_of("teams/a/prod.tfstate") == "prod"


def _target(key: str | None = "arn:aws:kms:us-east-1:1:key/k") -> Target:
    t = Target("bkt")
    t.key_arn = key
    t.account = "111122223333"
    return t


def deny(action: str, cond: dict[str, Any], principal: Any = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": principal, "Action": action,
            "Resource": [B, f"{B}/*"], "Condition": cond}


def test_bucket_policy_denies_recognized_by_effect_not_sid() -> None:
    t = _target()
    stmts = pol(deny("s3:*", {"Bool": {"aws:SecureTransport": False}}),
                deny("s3:Put*", {"StringNotEquals": {"s3:x-amz-server-side-encryption":
                                                     "aws:kms"}}),
                deny("s3:PutObject", {"StringNotEqualsIfExists": {
                    "s3:x-amz-server-side-encryption-aws-kms-key-id": t.key_arn}}))
    assert checks_policy.denies_insecure_transport(stmts, t)
    assert checks_policy.denies_non_kms_puts(stmts, t)
    assert checks_policy.denies_other_keys(stmts, t)
    # a deny for one principal only, or for another key, does not count
    one = pol(deny("s3:*", {"Bool": {"aws:SecureTransport": "false"}}, {"AWS": "arn:x"}))
    assert not checks_policy.denies_insecure_transport(one, t)
    other = pol(deny("s3:PutObject", {"StringNotEquals": {
        "s3:x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/z"}}))
    assert not checks_policy.denies_other_keys(other, t)
    aes = pol(deny("s3:PutObject", {"StringNotEquals": {
        "s3:x-amz-server-side-encryption": ["aws:kms", "AES256"]}}))
    assert not checks_policy.denies_non_kms_puts(aes, t)


def test_public_and_foreign_principals() -> None:
    t = _target()
    t.trusted_accounts = frozenset({"444455556666"})
    stmts = pol(
        {"Sid": "Open", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
         "Resource": f"{B}/*"},
        {"Sid": "Org", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"{B}/*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}},
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::999999999999:role/x",
                                                  "444455556666", "arn:aws:iam::111122223333:root"],
                                          "Service": "logging.s3.amazonaws.com",
                                          "CanonicalUser": "abc"},
         "Action": "s3:GetObject", "Resource": f"{B}/*"},
        {"Sid": "Not", "Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"},
         "Action": "s3:GetObject", "Resource": f"{B}/*"},
    )
    assert checks_policy.public_statements(stmts) == ["Open", "Not"]
    assert checks_policy.foreign_principals(stmts, t) == [
        "AWS:arn:aws:iam::999999999999:role/x", "CanonicalUser:abc"]


def test_key_policy_analysis() -> None:
    role = "arn:aws:iam::1:role/dev"
    stmts = pol(
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Roles", "Effect": "Allow", "Principal": {"AWS": [role]},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"},
        {"Sid": "Any", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEquals": {"kms:CallerAccount": "1"}}},
    )
    assert checks_kms.wildcard_statements(stmts) == []
    assert checks_kms.excess_actions(stmts, role) == ["kms:GenerateDataKeyWithoutPlaintext"]
    admin = pol({"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:*",
                 "Resource": "*"}, {"Sid": "Open", "Effect": "Allow", "Principal": {"AWS": "*"},
                                    "Action": "kms:Decrypt", "Resource": "*"})
    assert "kms:ScheduleKeyDeletion" in checks_kms.excess_actions(admin, role)
    assert checks_kms.wildcard_statements(admin) == ["Open"]


def test_role_spec() -> None:
    assert RoleSpec.parse("arn:aws:iam::1:role/ci/dev=dev") == RoleSpec(
        "arn:aws:iam::1:role/ci/dev", "dev")
    assert RoleSpec.parse("arn:aws:iam::1:role/x").name == "x"
    for bad in ("dev", "arn:aws:iam::1:user/x", "arn:aws:iam::1:role/x="):
        with pytest.raises(ValueError):
            RoleSpec.parse(bad)


@given(st.text(max_size=50).filter(lambda s: "${" not in s and "%{" not in s))
def test_hcl_quote_round_trips_through_python_hcl2(text: str) -> None:
    """(python-hcl2 8.1 cannot read the ``$${``/``%%{`` escapes Terraform accepts, so text
    holding template sequences is left to the ``terraform fmt`` test of the module.)"""
    import hcl2

    block = hclwrite.Block("locals").attr("v", text)
    doc = hcl2.loads(hclwrite.document([block]))
    value = doc["locals"][0]["v"]
    assert value.startswith('"') and value.endswith('"')
    assert "${" not in hclwrite.quote(text).replace("$${", "")


def test_docs_list_every_check() -> None:
    from pathlib import Path

    from stateward.s3audit.catalog import CHECKS

    text = (Path(__file__).resolve().parent.parent / "docs" / "s3-audit.md").read_text()
    missing = [cid for cid in CHECKS if f"| `{cid}` |" not in text]
    assert missing == []


def test_lifecycle_rule_scope() -> None:
    from stateward.s3audit.checks_bucket import _covers_states

    t = Target("b")
    t.states = [StateObject("dev/terraform.tfstate", 1, None)]
    assert _covers_states({"Filter": {}}, t)
    assert _covers_states({"Filter": {"Prefix": "dev/"}}, t)
    assert not _covers_states({"Filter": {"Prefix": "logs/"}}, t)
    assert _covers_states({"Filter": {"Tag": {"Key": "k", "Value": "v"}}}, t)
    scoped = Target("b", key_prefix="teams/a")
    assert _covers_states({"Filter": {"And": {"Prefix": "teams/"}}}, scoped)


class _FakeIam:
    """Just enough of an IAM client for one role with one malformed inline policy."""

    def get_role(self, RoleName: str) -> dict[str, Any]:
        return {"Role": {"Arn": f"arn:aws:iam::1:role/{RoleName}"}}

    def get_paginator(self, name: str) -> Any:
        pages = {"list_role_policies": [{"PolicyNames": ["broken"]}],
                 "list_attached_role_policies": [{"AttachedPolicies": []}]}

        class _P:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return pages[name]
        return _P()

    def get_role_policy(self, RoleName: str, PolicyName: str) -> dict[str, Any]:
        return {"PolicyDocument": '{"Statement": [{"Effect": "Allow", "Action": "s3:*", '
                                  '"Resource": {"not": "a list"}}]}'}


def test_malformed_role_policy_is_a_finding_not_a_crash() -> None:
    from stateward.s3audit import checks_iam
    from stateward.s3audit.model import Recorder, Report

    class _Clients:
        def get(self, service: str) -> Any:
            assert service == "iam"
            return _FakeIam()

    t = Target("bkt", roles=(RoleSpec("arn:aws:iam::1:role/ci"),))
    report = Report("x")
    checks_iam.roles(_Clients(), t, Recorder(report))  # type: ignore[arg-type]
    assert report.finding_ids() == ["SW-IAM-004"]
    assert "inline:broken: Resource is neither a string" in report.findings[0].found
    assert report.not_checked_ids() == ["SW-IAM-001", "SW-IAM-002", "SW-IAM-003"]
