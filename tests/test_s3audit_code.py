"""``stateward s3 audit --code DIR``: one fixture per code finding, each raising exactly its
id on top of a hardened configuration (the bootstrap module), and literals never echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stateward.cli.main import cli
from stateward.s3audit import bootstrap_hcl
from stateward.s3audit.bootstrap_plan import Plan
from stateward.s3audit.codeaudit import audit_code

PLAN = Plan("acme-tfstate", "eu-west-1", ("dev",))
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PASSPHRASE = "correct-horse-battery-staple-1234"
BACKEND = """terraform {
  backend "s3" {
    bucket       = "acme-tfstate"
    key          = "dev/terraform.tfstate"
    region       = "eu-west-1"
    encrypt      = true
    kms_key_id   = "arn:aws:kms:eu-west-1:111122223333:key/k"
    use_lockfile = true
  }
}
"""
ENCRYPTION = """terraform {
  encryption {
    key_provider "pbkdf2" "main" {
      passphrase = var.passphrase
    }
    method "aes_gcm" "main" {
      keys = key_provider.pbkdf2.main
    }
    state {
      method   = method.aes_gcm.main
      enforced = true
    }
  }
}
"""


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


#: name -> (file edits as (file, old, new), expected finding ids)
VARIANTS: dict[str, tuple[list[tuple[str, str, str]], list[str]]] = {
    "hardened": ([], []),
    "no-encrypt": ([("backend.tf", "    encrypt      = true\n", "")], ["SW-CODE-001"]),
    "no-kms-key-id": ([("backend.tf", '    kms_key_id   = "arn:aws:kms:eu-west-1:111122223333'
                        ':key/k"\n', "")], ["SW-CODE-002"]),
    "no-locking": ([("backend.tf", "    use_lockfile = true\n", "")], ["SW-CODE-003"]),
    "literal-keys": ([("backend.tf", "    use_lockfile = true\n",
                       f'    use_lockfile = true\n    access_key = "AKIAIOSFODNN7EXAMPLE"\n'
                       f'    secret_key = "{SECRET}"\n')], ["SW-CODE-004"]),
    "no-prevent-destroy": ([("main.tf", 'object_lock_enabled = true\n\n  lifecycle {\n    '
                             "prevent_destroy = true\n  }\n", "object_lock_enabled = true\n")],
                           ["SW-CODE-005"]),
    "versioning-suspended": ([("main.tf", 'status = "Enabled"', 'status = "Suspended"')],
                             ["SW-CODE-006"]),
    "sse-aes256": ([("main.tf", 'sse_algorithm     = "aws:kms"\n      kms_master_key_id = '
                     "aws_kms_key.state.arn", 'sse_algorithm = "AES256"')],
                   ["SW-CODE-007"]),
    "no-bucket-key": ([("main.tf", "bucket_key_enabled = true", "bucket_key_enabled = false")],
                      ["SW-CODE-008"]),
    "pab-flag-off": ([("main.tf", "restrict_public_buckets = true",
                       "restrict_public_buckets = false")], ["SW-CODE-009"]),
    "ownership-preferred": ([("main.tf", '"BucketOwnerEnforced"', '"BucketOwnerPreferred"')],
                            ["SW-CODE-010"]),
    "short-noncurrent": ([("main.tf", "noncurrent_days = 90", "noncurrent_days = 7")],
                         ["SW-CODE-011"]),
    "no-logging": ([("main.tf", 'resource "aws_s3_bucket_logging" "state"',
                     'resource "aws_s3_bucket_logging_disabled" "state"')], ["SW-CODE-012"]),
    "no-tls-deny": ([("main.tf", '"aws:SecureTransport"', '"aws:Referer"')], ["SW-CODE-013"]),
    "no-kms-deny": ([("main.tf", 'variable = "s3:x-amz-server-side-encryption"\n',
                      'variable = "s3:x-amz-acl"\n')], ["SW-CODE-014"]),
    "no-key-deny": ([("main.tf", '"s3:x-amz-server-side-encryption-aws-kms-key-id"',
                      '"s3:x-amz-storage-class"')], ["SW-CODE-015"]),
    "no-rotation": ([("main.tf", "enable_key_rotation     = true",
                      "enable_key_rotation     = false")], ["SW-CODE-016"]),
    "tofu-not-enforced": ([("encryption.tf", "      enforced = true\n", "")], ["SW-CODE-017"]),
    "tofu-passphrase-literal": ([("encryption.tf", "passphrase = var.passphrase",
                                  f'passphrase = "{PASSPHRASE}"')], ["SW-CODE-018"]),
}


def write(root: Path, edits: list[tuple[str, str, str]]) -> Path:
    files = {"main.tf": bootstrap_hcl.main_tf(PLAN), "backend.tf": BACKEND,
             "encryption.tf": ENCRYPTION}
    for name, old, new in edits:
        files[name] = _edit(files[name], old, new)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_code_variant(tmp_path: Path, variant: str) -> None:
    edits, expected = VARIANTS[variant]
    report = audit_code(write(tmp_path, edits), None)
    assert sorted(report.finding_ids()) == expected, [(f.check_id, f.found)
                                                      for f in report.findings]
    assert report.not_checked == []
    for f in report.findings:
        assert f.location is not None and f.location.line > 1


def test_literals_never_echoed(tmp_path: Path) -> None:
    root = write(tmp_path, VARIANTS["literal-keys"][0] + VARIANTS["tofu-passphrase-literal"][0])
    r = CliRunner().invoke(cli, ["s3", "audit", "--code", str(root), "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 1
    doc = json.loads(r.output)
    assert {f["id"] for f in doc["findings"]} == {"SW-CODE-004", "SW-CODE-018"}
    for needle in (SECRET, PASSPHRASE, "AKIAIOSFODNN7EXAMPLE", SECRET.replace("/", "\\/")):
        assert needle not in r.output
    table = CliRunner().invoke(cli, ["s3", "audit", "--code", str(root)],
                               catch_exceptions=False)
    assert SECRET not in table.output and PASSPHRASE not in table.output
    assert "backend.tf" in table.output


def test_unparseable_file_is_not_checked(tmp_path: Path) -> None:
    (tmp_path / "broken.tf").write_text('resource "aws_s3_bucket" "x" {\n  bucket = \n')
    report = audit_code(tmp_path, None)
    assert [(n.check_ids, n.resource) for n in report.not_checked] == [
        (("SW-CODE-019",), "broken.tf")]
    assert report.exit_code(__import__("stateward.s3audit.model").s3audit.model.Severity.LOW) == 2


def test_state_bucket_found_by_backend_name_only(tmp_path: Path) -> None:
    """An unrelated bucket without any hardening is not a state bucket."""
    (tmp_path / "other.tf").write_text('resource "aws_s3_bucket" "assets" {\n'
                                       '  bucket = "acme-assets"\n}\n')
    report = audit_code(write(tmp_path, []), None)
    assert report.findings == []
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "b.tf").write_text('resource "aws_s3_bucket" "assets" {\n  bucket = "x"\n}\n')
    assert audit_code(lone, "x").finding_ids() != []


def test_missing_extra_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_hcl2(name: str, *args: object, **kw: object) -> object:
        if name == "hcl2" or name.startswith("hcl2."):
            raise ImportError(name)
        return real(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_hcl2)
    r = CliRunner().invoke(cli, ["s3", "audit", "--code", str(tmp_path)])
    assert r.exit_code == 2
    assert "pip install 'stateward[s3-audit]'" in r.output
    assert len(r.output.strip().splitlines()) == 1
