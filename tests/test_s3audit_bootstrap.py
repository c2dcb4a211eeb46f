"""``stateward s3 bootstrap``: the generated module is ``terraform fmt`` clean (real
Terraform 1.11), parses with python-hcl2, passes checkov's S3/KMS/DynamoDB/IAM checks (every
skip inline with its reason) and the code audit; ``--apply`` against moto creates a backend
the live audit finds nothing wrong with, and a second run changes nothing."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import hcl2
import pytest
from click.testing import CliRunner

from stateward.cli.main import cli
from stateward.s3audit import bootstrap_hcl
from stateward.s3audit.bootstrap_plan import Plan
from stateward.s3audit.codeaudit import audit_code
from tests.harness import s3audit_checkov
from tests.harness.aws import apply_aws_env, moto_server
from tests.harness.s3audit_moto import moto_policy_workarounds
from tests.harness.support import TERRAFORM_111

PLAN = Plan("acme-tfstate", "eu-west-1", ("dev", "prod-eu"), "https://stateward.example:7480")


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bootstrap")
    r = CliRunner().invoke(cli, ["s3", "bootstrap", "--bucket", PLAN.bucket, "--region",
                                 PLAN.region, "--env", "dev", "--env", "prod-eu", "--out",
                                 str(out), "--stateward-endpoint", "https://stateward.example:7480"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_files_written(module_dir: Path) -> None:
    names = sorted(p.relative_to(module_dir).as_posix() for p in module_dir.rglob("*.tf"))
    assert names == ["backends/dev.tf", "backends/prod-eu.tf", "main.tf"]
    backend = (module_dir / "backends/prod-eu.tf").read_text()
    assert 'key                  = "prod-eu/terraform.tfstate"' in backend
    assert "use_lockfile         = true" in backend
    assert 'endpoints            = { s3 = "https://stateward.example:7480" }' in backend


def test_terraform_fmt_clean(module_dir: Path, tmp_path: Path) -> None:
    r = subprocess.run([TERRAFORM_111, "fmt", "-check", "-recursive", "-diff", str(module_dir)],
                       capture_output=True, text=True, timeout=60,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                            "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr


def test_parses_with_python_hcl2(module_dir: Path) -> None:
    doc = hcl2.loads((module_dir / "main.tf").read_text())
    types = {json.loads(k) for item in doc["resource"] for k in item}
    assert {"aws_s3_bucket", "aws_kms_key", "aws_s3_bucket_policy", "aws_iam_role",
            "aws_s3_bucket_public_access_block", "aws_s3_bucket_lifecycle_configuration",
            "aws_s3_bucket_logging", "aws_s3_bucket_ownership_controls"} <= types


def test_code_audit_of_the_module_is_clean(module_dir: Path) -> None:
    report = audit_code(module_dir, None)
    assert report.findings == [] and report.not_checked == []
    # every code check but the OpenTofu encryption ones (no encryption block here)
    assert len({cid for cid, _ in report.passed}) == 16


def test_checkov_clean(module_dir: Path) -> None:
    doc = s3audit_checkov.run(module_dir)
    results = doc["results"]
    assert isinstance(results, dict)
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]
              if str(c["resource"]).split(".")[0].startswith(s3audit_checkov.RESOURCE_PREFIXES)
              or ".aws_iam_policy_document." in f".{c['resource']}"]
    assert failed == []
    summary = doc["summary"]
    assert isinstance(summary, dict) and summary["passed"] > 50, "checkov ran too few checks"
    assert summary["parsing_errors"] == 0
    # every skip is inline, with its reason
    text = (module_dir / "main.tf").read_text()
    skips = re.findall(r"# checkov:skip=(CKV2?_AWS_\d+):(.+)", text)
    assert skips and all(reason.strip() for _, reason in skips)
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped == {cid for cid, _ in skips}


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        apply_aws_env(mp, tmp_path_factory.mktemp("aws"))
        with moto_policy_workarounds(), moto_server() as url:
            yield url


def test_apply_then_audit_finds_nothing(moto_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["s3", "bootstrap", "--bucket", "fresh-tfstate", "--region", "us-east-1", "--env",
            "dev", "--env", "prod", "--out", str(tmp_path / "m"), "--apply", "--endpoint-url",
            moto_url]
    first = runner.invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "created or changed the backend" in first.output
    again = runner.invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "nothing to change: everything was already in place" in again.output
    assert not re.search(r"^(created|updated)\s", again.output, re.M)
    fmt = subprocess.run([TERRAFORM_111, "fmt", "-check", "-recursive", str(tmp_path / "m")],
                         capture_output=True, text=True, timeout=60,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                              "TF_CLI_CONFIG_FILE": "/dev/null", "CHECKPOINT_DISABLE": "1"})
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    imports = (tmp_path / "m" / "imports.tf").read_text()
    assert 'to = aws_s3_bucket.state\n  id = "fresh-tfstate"' in imports
    assert "arn:aws:kms:us-east-1:123456789012:key/" in (tmp_path / "m/backends/dev.tf").read_text()
    role = "arn:aws:iam::123456789012:role/fresh-tfstate-{}-state"
    audit = runner.invoke(cli, [
        "s3", "audit", "--bucket", "fresh-tfstate", "--endpoint-url", moto_url, "--region",
        "us-east-1", "--role", role.format("dev") + "=dev", "--role", role.format("prod") + "=prod",
        "--code", str(tmp_path / "m"), "--json"], catch_exceptions=False)
    doc = json.loads(audit.output)
    assert doc["findings"] == [] and doc["not_checked"] == [], audit.output
    assert audit.exit_code == 0
    passed = {p["id"] for p in doc["passed"]}
    assert {"SW-S3-020", "SW-S3-021", "SW-S3-022", "SW-KMS-003", "SW-IAM-001",
            "SW-CODE-005"} <= passed


def test_bad_names_refused() -> None:
    for bucket, envs in (("Bad_Bucket", ("dev",)), ("ok-bucket", ("Prod",)), ("ok-bucket", ())):
        with pytest.raises(ValueError):
            Plan(bucket, "us-east-1", envs)
    assert bootstrap_hcl.files(PLAN)["main.tf"].count("resource \"aws_iam_role\"") == 2


def test_existing_different_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text("# mine\n")
    r = CliRunner().invoke(cli, ["s3", "bootstrap", "--bucket", "acme-tfstate", "--region",
                                 "us-east-1", "--env", "dev", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "exists and differs (use --force)" in r.output
    assert (tmp_path / "main.tf").read_text() == "# mine\n"
