"""``stateward s3 audit`` against a catalog of buckets in moto (server mode): one fully
hardened, one variant per check breaking exactly that setting; each raises exactly the
expected finding ids (``EXPECTED``). moto's policy evaluation is relaxed and lock objects are
backdated in-process: see tests/harness/s3audit_moto.py and s3audit_catalog.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner

from stateward.cli.main import cli
from stateward.s3audit.awsapi import Clients
from stateward.s3audit.model import Report
from stateward.s3audit.runner import audit_bucket
from stateward.s3audit.target import RoleSpec, Target
from tests.harness.aws import apply_aws_env, moto_server
from tests.harness.s3audit_catalog import ACCOUNT, REGION, build, client
from tests.harness.s3audit_moto import moto_policy_workarounds

#: variant (the setting it breaks) -> the finding ids the audit must raise, exactly.
EXPECTED: dict[str, list[str]] = {
    "hardened": [],
    "versioning-off": ["SW-S3-001", "SW-S3-002"],  # Object Lock needs versioning
    "no-object-lock": ["SW-S3-002"],
    "no-lifecycle": ["SW-S3-003"],
    "short-noncurrent": ["SW-S3-004"],
    "expires-current": ["SW-S3-005"],
    "sse-s3": ["SW-S3-010"],
    "aws-managed-key": ["SW-S3-011"],
    "no-bucket-key": ["SW-S3-012"],
    "rotation-off": ["SW-KMS-001"],
    "key-wildcard": ["SW-KMS-002"],
    "key-role-excess": ["SW-KMS-003"],
    "key-disabled": ["SW-KMS-004"],
    "key-pending-deletion": ["SW-KMS-004"],
    "no-tls-deny": ["SW-S3-020"],
    "no-kms-put-deny": ["SW-S3-021"],
    "no-other-key-deny": ["SW-S3-022"],
    "public-principal": ["SW-S3-023"],
    "foreign-account": ["SW-S3-024"],
    "malformed-policy": ["SW-S3-025"],
    "bucket-pab-off": ["SW-S3-030"],
    "ownership-preferred": ["SW-S3-032"],
    # ACLs need ObjectWriter ownership and an open Public Access Block to be set at all
    "public-object-acl": ["SW-S3-030", "SW-S3-032", "SW-S3-033"],
    "object-other-key": ["SW-S3-040"],
    "empty-state": ["SW-S3-041"],
    "huge-state": ["SW-S3-041"],
    "stale-lock": ["SW-S3-042"],
    "fresh-lock": [],
    "md5-object-mismatch": ["SW-S3-043"],
    "md5-ddb-mismatch": ["SW-S3-043"],
    "secret-in-state": ["SW-S3-044"],
    "no-lock-table": ["SW-DDB-001"],
    "lock-table-bad-key": ["SW-DDB-001"],
    "ddb-no-cmk": ["SW-DDB-002"],
    "ddb-no-pitr": ["SW-DDB-003"],
    "ddb-no-deletion-protection": ["SW-DDB-004"],
    "no-logging": ["SW-S3-050"],
    "replicated": ["SW-S3-051"],
    "role-wildcard": ["SW-IAM-001"],
    "role-notaction": ["SW-IAM-002"],
    "role-delete-versions": ["SW-IAM-003"],
}
#: checks the audit cannot run for a variant (never counted as passed)
NOT_CHECKED = {
    "malformed-policy": ["SW-S3-020", "SW-S3-021", "SW-S3-022", "SW-S3-023", "SW-S3-024"],
    "huge-state": ["SW-S3-044"],
}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        apply_aws_env(mp, tmp_path_factory.mktemp("aws"))
        with moto_policy_workarounds(), moto_server() as url:
            ctl = client("s3control", url)
            ctl.meta.events.register("before-sign.s3-control", _strip)
            ctl.put_public_access_block(AccountId=ACCOUNT, PublicAccessBlockConfiguration={
                k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                  "RestrictPublicBuckets")})
            yield url


def _strip(request: Any, **_: Any) -> None:
    request.url = request.url.replace(f"{ACCOUNT}.", "")


def run(url: str, variant: str, name: str | None = None, **kw: Any) -> Report:
    built = build(url, name or variant, frozenset({variant}))
    target = Target(built.bucket, lock_table=built.table,
                    roles=(RoleSpec(built.roles["dev"], "dev"), RoleSpec(built.roles["prod"])),
                    max_state_bytes=4096, **kw)
    return audit_bucket(Clients(REGION, url), target)


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_catalog_variant_raises_exactly_its_findings(moto_url: str, variant: str) -> None:
    report = run(moto_url, variant)
    assert sorted(set(report.finding_ids())) == EXPECTED[variant], [
        (f.check_id, f.found) for f in report.findings]
    assert report.not_checked_ids() == NOT_CHECKED.get(variant, []), report.not_checked


def test_trusted_account_is_not_a_finding(moto_url: str) -> None:
    report = run(moto_url, "foreign-account", "trusted",
                 trusted_accounts=frozenset({"999999999999"}))
    assert report.finding_ids() == []


def test_account_public_access_block_off(moto_url: str) -> None:
    ctl = client("s3control", moto_url)
    ctl.meta.events.register("before-sign.s3-control", _strip)
    ctl.delete_public_access_block(AccountId=ACCOUNT)
    try:
        report = run(moto_url, "hardened", "hardened-acct")
        assert report.finding_ids() == ["SW-S3-031"]
    finally:
        ctl.put_public_access_block(AccountId=ACCOUNT, PublicAccessBlockConfiguration={
            k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                              "RestrictPublicBuckets")})


def test_secret_finding_names_location_not_value(moto_url: str) -> None:
    report = run(moto_url, "secret-in-state", "secret-2")
    (finding,) = report.findings
    assert finding.resource.endswith("prod/terraform.tfstate")
    assert "outputs.db_password_hint" in finding.found and "aws-access-key" in finding.found
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(report.to_dict(_low()))


def _low() -> Any:
    from stateward.s3audit.model import Severity

    return Severity.LOW


def _deny(operation: str, status: int = 403, code: str = "AccessDenied") -> Any:
    """A botocore hook answering ``operation`` with an S3 error (by default 403 AccessDenied,
    as AWS does for a principal without the permission)."""
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{operation}</Message></Error>").encode()

    def hook(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"},
                           _Raw(body))
    return hook


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


def test_missing_permission_is_not_checked_never_passed(moto_url: str) -> None:
    built = build(moto_url, "denied", frozenset())
    clients = Clients(REGION, moto_url)
    clients.s3.meta.events.register("before-send.s3.GetBucketPolicy", _deny("GetBucketPolicy"))
    report = audit_bucket(clients, Target(built.bucket, lock_table=built.table))
    ids = report.not_checked_ids()
    assert ids == ["SW-S3-020", "SW-S3-021", "SW-S3-022", "SW-S3-023", "SW-S3-024", "SW-S3-025"]
    assert not {cid for cid, _ in report.passed} & set(ids)
    assert "s3:GetBucketPolicy: AccessDenied (HTTP 403)" in report.not_checked[0].reason
    assert report.findings == [] and report.exit_code(_low()) == 2


def test_cli_exit_codes_and_no_data_dir(moto_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hardened = build(moto_url, "cli-ok", frozenset())
    weak = build(moto_url, "cli-weak", frozenset({"rotation-off"}))
    runner = CliRunner()
    base = ["s3", "audit", "--endpoint-url", moto_url, "--region", REGION]
    ok = runner.invoke(cli, [*base, "--bucket", hardened.bucket, "--lock-table",
                             hardened.table], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "0 finding(s)" in ok.output
    bad = runner.invoke(cli, [*base, "--bucket", weak.bucket, "--json"], catch_exceptions=False)
    assert bad.exit_code == 1
    doc = json.loads(bad.output)
    assert [f["id"] for f in doc["findings"]] == ["SW-KMS-001"]
    assert doc["findings"][0]["fix"]["cli"].startswith("aws kms enable-key-rotation --key-id ")
    high = runner.invoke(cli, [*base, "--bucket", weak.bucket, "--fail-on", "high"],
                         catch_exceptions=False)
    assert high.exit_code == 0, high.output
    assert list(tmp_path.iterdir()) == []  # no stateward-data, nothing written


def test_cloudtrail_data_events_instead_of_access_logs(moto_url: str) -> None:
    built = build(moto_url, "trail", frozenset({"no-logging"}))
    s3, ct = client("s3", moto_url), client("cloudtrail", moto_url)
    s3.create_bucket(Bucket="trail-audit-logs")
    ct.create_trail(Name="org", S3BucketName="trail-audit-logs")
    ct.put_event_selectors(TrailName="org", EventSelectors=[{
        "ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [
            {"Type": "AWS::S3::Object", "Values": [f"arn:aws:s3:::{built.bucket}/"]}]}])
    target = Target(built.bucket, lock_table=built.table)
    assert audit_bucket(Clients(REGION, moto_url), target).finding_ids() == ["SW-S3-050"]
    ct.start_logging(Name="org")  # only a trail that is logging counts
    target = Target(built.bucket, lock_table=built.table)
    assert audit_bucket(Clients(REGION, moto_url), target).finding_ids() == []


def test_unimplemented_api_is_not_checked(moto_url: str) -> None:
    """S3-compatible stores (and older endpoints) answer 501 NotImplemented for APIs they lack
    (ownership controls, object lock): those checks are not checked, the rest still run."""
    built = build(moto_url, "partial", frozenset())
    clients = Clients(REGION, moto_url)
    clients.s3.meta.events.register("before-send.s3.GetBucketOwnershipControls",
                                    _deny("GetBucketOwnershipControls", 501, "NotImplemented"))
    report = audit_bucket(clients, Target(built.bucket, lock_table=built.table))
    assert report.not_checked_ids() == ["SW-S3-032"]
    assert "NotImplemented (HTTP 501)" in report.not_checked[0].reason
    assert report.findings == [] and report.exit_code(_low()) == 2
