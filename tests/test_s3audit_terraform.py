"""Secrets inside states written by the real Terraform 1.11 (``backend "s3"`` against moto's
S3 in server mode): ``stateward s3 audit`` finds them and reports where, never the value —
in the table, the JSON and the SARIF alike."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.aws import moto_server
from tests.harness.s3audit_catalog import REGION, client
from tests.harness.support import TERRAFORM_111

#: A random token (found by its entropy; terraform_data mirrors it in ``output``) and a
#: password Terraform itself marks sensitive (found by that mark).
TOKEN = "ghp_" + "Zq8Rk2Lm5Nx7Pw3Tv9Yb4Hc6Jd1Fg0Se2Ua"
PASSWORD = "Tr0ub4dor-3-horse-battery"
BUCKET = "tf-secrets-state"


def tf_config(url: str) -> str:
    return f"""
terraform {{
  backend "s3" {{
    bucket                      = "{BUCKET}"
    key                         = "dev/terraform.tfstate"
    region                      = "{REGION}"
    endpoints                   = {{ s3 = "{url}" }}
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_region_validation      = true
    use_lockfile                = true
  }}
}}

variable "db_password" {{
  type      = string
  sensitive = true
}}

resource "terraform_data" "ci" {{
  input = "{TOKEN}"
}}

output "db_password" {{
  value     = var.db_password
  sensitive = true
}}
"""


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def _env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "terraformrc").write_text("")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_",
                                                                      "STATEWARD_"))}
    return base | {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "HOME": str(home),
        "TF_CLI_CONFIG_FILE": str(home / "terraformrc"), "TF_VAR_db_password": PASSWORD,
    }


def _tf(work: Path, env: dict[str, str], *args: str) -> None:
    r = subprocess.run([TERRAFORM_111, *args], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"terraform {args}: {r.stdout}\n{r.stderr}"


def _stateward(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    import sys

    return subprocess.run([sys.executable, "-m", "stateward", *args], env=env,
                          capture_output=True, timeout=120)


def test_terraform_state_secrets_found_without_values(moto_url: str, tmp_path: Path) -> None:
    if not os.access(TERRAFORM_111, os.X_OK):
        raise RuntimeError(f"Terraform 1.11 not found at {TERRAFORM_111}")
    client("s3", moto_url).create_bucket(Bucket=BUCKET)
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.tf").write_text(tf_config(moto_url))
    env = _env(tmp_path / "home")
    _tf(work, env, "init", "-input=false", "-no-color")
    _tf(work, env, "apply", "-auto-approve", "-input=false", "-no-color")
    state = client("s3", moto_url).get_object(Bucket=BUCKET, Key="dev/terraform.tfstate")
    body = state["Body"].read()
    assert TOKEN.encode() in body and PASSWORD.encode() in body  # Terraform stored both

    sarif_path = tmp_path / "audit.sarif"
    base = ["s3", "audit", "--bucket", BUCKET, "--endpoint-url", moto_url, "--region", REGION]
    outputs = []
    for extra in ([], ["--json"], ["--sarif", str(sarif_path)]):
        r = _stateward(env | {"COLUMNS": "250"}, *base, *extra)
        assert r.returncode == 1, r.stderr
        outputs += [r.stdout, r.stderr]
    outputs.append(sarif_path.read_bytes())
    doc = json.loads(outputs[2])
    secrets = {f["found"].split(" at ")[1].split(" ")[0]: f["found"].split(" ")[0]
               for f in doc["findings"] if f["id"] == "SW-S3-044"}
    ci = "resources[terraform_data.ci].instances[0].attributes"
    assert secrets == {"outputs.db_password": "sensitive-output",
                       f"{ci}.input": "high-entropy", f"{ci}.output": "high-entropy"}
    for blob in outputs:
        for value in (TOKEN, PASSWORD, TOKEN[4:20], PASSWORD[:12]):
            assert value.encode() not in blob
    assert not (tmp_path / "stateward-data").exists()
