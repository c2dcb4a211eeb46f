"""Import from a Terraform S3 backend (and from files), export in the S3 backend's layout.

The source bucket is written by the real Terraform 1.11 binary with ``backend "s3"`` against
moto's S3 in server mode (a local fixture of this module: one moto server per module), over
real HTTP, with versioning on and ``use_lockfile = true``: the default workspace and two
workspaces exactly where the backend puts them. boto3 adds what Terraform leaves only on a bad
day or what other tools leave: a stale ``.tflock``, a ``-md5`` digest object, a README, and an
OpenTofu client-encrypted state (tests/vectors/tofu). The exported prefix is read back by
Terraform's S3 backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from click.testing import CliRunner, Result

from stateward.cli import imports as cli_imports
from stateward.cli.main import cli
from stateward.config import ClientEncryptionRule, RetentionRule, Settings
from stateward.domain import s3layout
from stateward.domain.errors import BadRequest, Conflict, Forbidden, Locked, TooLarge
from stateward.domain.paths import validate_path
from stateward.domain.policy_model import Role, Rule
from stateward.domain.principal import Principal
from stateward.service import context as audit_context
from stateward.service.audit import AuditQuery
from stateward.service.core import StateService
from stateward.service.factory import build_service
from stateward.service.imports import ImportSource, resume_point
from stateward.transfer import s3source
from tests.harness.aws import moto_server, s3_client
from tests.harness.pg import Store
from tests.harness.support import TERRAFORM_111, lock_body, make_state

REGION = "us-east-1"
ADMIN = Principal("setup", roles=("admin",))
VECTORS = Path(__file__).parent / "vectors" / "tofu"
TOFU_STATE = (VECTORS / "real_state_pbkdf2_default.tfstate").read_bytes()
TOFU_PLAINTEXT = (VECTORS / "plaintext.tfstate").read_bytes()
TOFU_PASSPHRASE = "correct-horse-battery-staple"
#: A value in every Terraform-written state of the source: must never reach the audit trail.
NEEDLE = "needle-7f3a9c"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "import-export.md"
INTERNAL_ERROR = {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
AWS_VARS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    """moto's S3 in server mode on loopback, one per module (its own, not harness/aws.py's)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials for the CLI's boto3 clients; no shared config, no metadata service."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    for var, value in AWS_VARS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def tf_config(url: str, bucket: str, key: str) -> str:
    """A configuration needing no provider download: built-in terraform_data and outputs."""
    return f"""
terraform {{
  backend "s3" {{
    bucket                      = "{bucket}"
    key                         = "{key}"
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

variable "n" {{
  type    = number
  default = 0
}}

resource "terraform_data" "x" {{
  input = var.n
}}

output "n" {{
  value = var.n
}}

output "tag" {{
  value = "{NEEDLE}"
}}
"""


def tf_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "terraformrc").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "STATEWARD_", "AWS_"))}
    return (
        env
        | AWS_VARS
        | {
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "HOME": str(home),
            "TF_CLI_CONFIG_FILE": str(home / "terraformrc"),
            "AWS_CONFIG_FILE": str(home / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        }
    )


def terraform(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [TERRAFORM_111, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, f"terraform {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r


@dataclass(frozen=True)
class Source:
    url: str
    bucket: str
    env: dict[str, str]

    def client(self) -> Any:
        return s3_client(self.url)

    def versions(self, key: str) -> list[tuple[str, bytes, float]]:
        """(version ID, bytes, LastModified) of ``key``, oldest first."""
        s3 = self.client()
        listed = s3.list_object_versions(Bucket=self.bucket, Prefix=key)["Versions"]
        mine = [v for v in reversed(listed) if v["Key"] == key]
        mine.sort(key=lambda v: v["LastModified"])
        out = []
        for v in mine:
            body = s3.get_object(Bucket=self.bucket, Key=key, VersionId=v["VersionId"])["Body"]
            out.append((v["VersionId"], body.read(), v["LastModified"].timestamp()))
        return out

    def current(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def source(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A bucket laid out by Terraform's own S3 backend, plus the odd objects tools leave."""
    if not os.access(TERRAFORM_111, os.X_OK):
        raise RuntimeError(f"Terraform 1.11 not found at {TERRAFORM_111}")
    root = tmp_path_factory.mktemp("tfsource")
    env = tf_env(root / "home")
    s3 = s3_client(moto_s3)
    bucket = f"tfstate-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    work = root / "network"
    work.mkdir()
    (work / "main.tf").write_text(tf_config(moto_s3, bucket, "network/terraform.tfstate"))
    terraform(work, env, "init", "-input=false", "-no-color")
    for n in (1, 2, 3):  # three versions of the default workspace's state
        terraform(work, env, "apply", "-auto-approve", "-input=false", "-no-color", f"-var=n={n}")
    for ws, n in (("staging", 10), ("prod", 20)):
        terraform(work, env, "workspace", "new", "-no-color", ws)
        terraform(work, env, "apply", "-auto-approve", "-input=false", "-no-color", f"-var=n={n}")
    terraform(work, env, "workspace", "select", "-no-color", "default")
    lock = lock_body(who="ci@runner-7")
    s3.put_object(Bucket=bucket, Key="app/terraform.tfstate.tflock", Body=lock)
    digest = hashlib.md5(Source(moto_s3, bucket, env).current("network/terraform.tfstate"))
    s3.put_object(Bucket=bucket, Key="network/terraform.tfstate-md5", Body=digest.hexdigest())
    s3.put_object(Bucket=bucket, Key="README.txt", Body=b"states of the platform team\n")
    s3.put_object(Bucket=bucket, Key="tofu/terraform.tfstate", Body=TOFU_STATE)
    return Source(moto_s3, bucket, env)


def run(data: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data), *args], catch_exceptions=False)


def import_s3(data: Path, src: Source, *extra: str, bucket: str | None = None) -> Result:
    return run(
        data,
        "import",
        "s3",
        "--bucket",
        bucket or src.bucket,
        "--endpoint-url",
        src.url,
        "--region",
        REGION,
        "--json",
        *extra,
    )


def report(result: Result) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.stdout)
    doc["by_key"] = {r["key"]: r for r in doc["rows"]}
    return doc


@pytest.fixture
def svc_of() -> Iterator[Any]:
    """Services on CLI data directories (embedded store), disposed of at the end."""
    built: list[StateService] = []

    def build(data: Path, **kw: Any) -> StateService:
        svc = build_service(Settings(data_dir=data, **kw))
        built.append(svc)
        return svc

    yield build
    for svc in built:
        svc.engine.dispose()


def bodies(svc: StateService, path: str) -> list[bytes]:
    seqs = sorted(v.seq for v in svc.history.history(ADMIN, path))
    return [svc.history.get_version_body(ADMIN, path, s)[1] for s in seqs]


# -- the layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "options", "path"),
    [
        ("network/terraform.tfstate", {}, "network"),
        ("prod.tfstate", {}, "prod"),
        ("team/app/prod.tfstate", {}, "team/app/prod"),
        ("production/example", {}, "production/example"),
        ("env:/staging/network/terraform.tfstate", {}, "network/staging"),
        ("env:/prod/prod.tfstate", {}, "prod/prod"),
        ("network/terraform.tfstate", {"path_prefix": "legacy"}, "legacy/network"),
        ("env:/qa/net/terraform.tfstate", {"path_prefix": "legacy/"}, "legacy/net/qa"),
        ("terraform.tfstate", {"path_prefix": "team/app"}, "team/app"),
        ("env:/dev/terraform.tfstate", {"path_prefix": "team/app"}, "team/app/dev"),
        ("teams/a/net/terraform.tfstate", {"prefix": "teams/a"}, "net"),
        ("env:/qa/teams/a/net/terraform.tfstate", {"prefix": "teams/a/"}, "net/qa"),
        ("teams/a/env:/qa/db/terraform.tfstate", {"prefix": "teams/a"}, "db/qa"),
        (
            "far/workspaces/dev/far/terraform.tfstate",
            {"workspace_key_prefix": "far/workspaces"},
            "far/dev",
        ),
        (
            "env:/staging/network/terraform.tfstate",
            {"workspace_key_prefix": ""},
            "env:/staging/network",
        ),
    ],
)
def test_object_keys_map_to_paths(key: str, options: dict[str, str], path: str) -> None:
    assert s3layout.map_key(key, **options).path == path


def test_layout_skips_and_refusals() -> None:
    assert s3layout.map_key("app/terraform.tfstate.tflock").skip == s3layout.SKIP_LOCK
    assert s3layout.map_key("env:/x/app/terraform.tfstate.tflock").skip == s3layout.SKIP_LOCK
    assert s3layout.map_key("network/terraform.tfstate-md5").skip == s3layout.SKIP_DIGEST
    assert s3layout.map_key("states/").skip == s3layout.SKIP_FOLDER
    bare = s3layout.map_key("terraform.tfstate")
    assert bare.path is None and bare.problem is not None and "--path-prefix" in bare.problem
    assert s3layout.map_key("env:/dev/terraform.tfstate").path is None
    with pytest.raises(BadRequest, match="reserved"):
        validate_path(str(s3layout.map_key("env:/lock/svc/terraform.tfstate").path))
    # selection: the prefix and, for workspaces, the prefix of the key inside
    assert s3layout.selected("env:/qa/teams/a/x.tfstate", "teams/a", "env:")
    assert not s3layout.selected("env:/qa/teams/b/x.tfstate", "teams/a", "env:")
    assert s3layout.list_prefixes("teams/a", "env:") == ["teams/a/", "env:/"]
    assert s3layout.list_prefixes("", "env:") == [""]
    # export
    assert s3layout.export_key("team/app") == "team/app/terraform.tfstate"
    assert s3layout.export_key("team/app", "/out/x/") == "out/x/team/app/terraform.tfstate"
    assert s3layout.parse_s3_url("s3://b/p/q") == ("b", "p/q/")
    assert s3layout.parse_s3_url("s3://b") == ("b", "")
    with pytest.raises(ValueError, match="bucket"):
        s3layout.parse_s3_url("s3:///p")


def test_docs_worked_example_matches_the_code() -> None:
    """Every row of the worked example in docs/import-export.md is what map_key does."""
    rows = 0
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        key, options, path = cells[0].strip("`"), cells[1], cells[2]
        kw: dict[str, str] = {}
        words = shlex.split(options.replace("`", "")) if options not in ("", "—") else []
        for flag, value in zip(words[::2], words[1::2], strict=True):
            kw[flag.lstrip("-").replace("-", "_")] = value
        mapping = s3layout.map_key(key, **kw)
        if path.startswith("`"):
            assert mapping.path == path.strip("`"), line
            validate_path(path.strip("`"))
        elif path.startswith("skipped"):
            assert mapping.skip is not None, line
        else:
            assert mapping.path is None or not _valid(mapping.path), line
        rows += 1
    assert rows >= 10


def _valid(path: str) -> bool:
    try:
        validate_path(path)
    except BadRequest:
        return False
    return True


def test_terraform_wrote_the_s3_backend_layout(source: Source) -> None:
    """The layout the import relies on, as Terraform 1.11 really wrote it."""
    s3 = source.client()
    listed = s3.list_object_versions(Bucket=source.bucket)
    keys = {v["Key"] for v in listed["Versions"]}
    assert {
        "network/terraform.tfstate",
        "env:/staging/network/terraform.tfstate",
        "env:/prod/network/terraform.tfstate",
        "network/terraform.tfstate.tflock",  # use_lockfile: written, then deleted
        "env:/staging/network/terraform.tfstate.tflock",
    } <= keys
    current = {o["Key"] for o in s3.list_objects_v2(Bucket=source.bucket)["Contents"]}
    assert "network/terraform.tfstate.tflock" not in current  # released locks are gone
    history = source.versions("network/terraform.tfstate")
    assert [json.loads(b)["serial"] for _, b, _ in history] == [1, 2, 3]
    staging = json.loads(source.current("env:/staging/network/terraform.tfstate"))
    assert staging["outputs"]["n"]["value"] == 10


# -- import ------------------------------------------------------------------------------------


def test_import_current_objects(source: Source, aws: None, tmp_path: Path, svc_of: Any) -> None:
    data = tmp_path / "d"
    r = import_s3(data, source)
    assert r.exit_code == 0, r.output
    doc = report(r)
    rows = doc["by_key"]
    expected = {
        "network/terraform.tfstate": "network",
        "env:/staging/network/terraform.tfstate": "network/staging",
        "env:/prod/network/terraform.tfstate": "network/prod",
        "tofu/terraform.tfstate": "tofu",
    }
    for key, path in expected.items():
        assert (rows[key]["path"], rows[key]["result"], rows[key]["versions"]) == (
            path,
            "imported",
            1,
        )
    assert rows["app/terraform.tfstate.tflock"]["result"] == "skipped"
    assert rows["app/terraform.tfstate.tflock"]["detail"] == s3layout.SKIP_LOCK
    assert rows["network/terraform.tfstate-md5"]["detail"] == s3layout.SKIP_DIGEST
    assert rows["README.txt"]["result"] == "skipped"
    assert rows["README.txt"]["detail"] == "not a state: body is not valid JSON"
    assert doc["totals"] == {
        "imported_paths": 4,
        "imported_versions": 4,
        "would_import_versions": 0,
        "up_to_date": 0,
        "skipped": 3,
        "refused": 0,
    }
    assert "importing" in r.stderr  # the progress bar
    svc = svc_of(data)
    assert [s.path for s in svc.history.list_states(ADMIN)] == sorted(expected.values())
    for key, path in expected.items():
        (version,) = svc.history.history(ADMIN, path)
        state = svc.writes.read(ADMIN, path)
        assert state is not None and state.body == source.current(key)
        assert version.kind == "import" and version.current and version.author.startswith("cli:")
        modified = source.client().head_object(Bucket=source.bucket, Key=key)["LastModified"]
        assert version.created_at == modified.timestamp()  # the source's time is kept
    assert svc.history.history(ADMIN, "tofu")[0].client_encrypted
    # a second run imports nothing, and says so
    again = run(data, "import", "s3", "--bucket", source.bucket, "--endpoint-url", source.url)
    assert again.exit_code == 0, again.output
    assert "nothing new to import; 4 path(s) up to date, 3 skipped, 0 refused" in again.stdout
    assert [len(svc.history.history(ADMIN, p)) for p in expected.values()] == [1, 1, 1, 1]


def test_import_every_version(source: Source, aws: None, tmp_path: Path, svc_of: Any) -> None:
    data = tmp_path / "d"
    r = import_s3(data, source, "--versions")
    assert r.exit_code == 0, r.output
    rows = report(r)["by_key"]
    assert rows["network/terraform.tfstate"]["versions"] == 3
    # lock objects have versions too (each lock taken and released): skipped by name
    assert rows["network/terraform.tfstate.tflock"]["detail"] == s3layout.SKIP_LOCK
    svc = svc_of(data)
    for key, path in (
        ("network/terraform.tfstate", "network"),
        ("env:/staging/network/terraform.tfstate", "network/staging"),
        ("env:/prod/network/terraform.tfstate", "network/prod"),
    ):
        src = source.versions(key)
        assert bodies(svc, path) == [b for _, b, _ in src]
        hist = sorted(svc.history.history(ADMIN, path), key=lambda v: v.seq)
        assert [v.kind for v in hist] == ["import"] * len(src)
        assert [v.created_at for v in hist] == [t for _, _, t in src]
        assert hist[-1].current and not any(v.current for v in hist[:-1])
    def serials(path: str) -> list[int]:
        return [v.serial for v in sorted(svc.history.history(ADMIN, path), key=lambda v: v.seq)]

    assert serials("network") == [1, 2, 3]
    # workspace new wrote an empty state first (serial 0), then the apply
    assert serials("network/prod")[-1] >= 1
    again = import_s3(data, source, "--versions")
    assert again.exit_code == 0 and report(again)["totals"]["imported_versions"] == 0
    assert report(again)["totals"]["up_to_date"] == 4
    # current-only after a full import: the current versions already match
    current_only = import_s3(data, source)
    assert current_only.exit_code == 0, current_only.output
    assert report(current_only)["by_key"]["network/terraform.tfstate"]["result"] == "up to date"
    assert len(svc.history.history(ADMIN, "network")) == 3


def test_import_resumes_after_an_interruption(
    source: Source, aws: None, tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second version of network/terraform.tfstate cannot be read: the first is imported,
    the other keys are imported, the run fails; the next run continues from version 2."""
    second = source.versions("network/terraform.tfstate")[1][0]
    real = s3source.boto_client

    def flaky_client(*args: Any, **kw: Any) -> Any:
        client = real(*args, **kw)
        get_object = client.get_object

        def get(**params: Any) -> Any:
            if params.get("VersionId") == second:
                raise botocore.exceptions.ClientError(
                    {
                        "Error": {"Code": "InternalError"},
                        "ResponseMetadata": {"HTTPStatusCode": 500},
                    },
                    "GetObject",
                )
            return get_object(**params)

        client.get_object = get
        return client

    monkeypatch.setattr(s3source, "boto_client", flaky_client)
    data = tmp_path / "d"
    r = import_s3(data, source, "--versions")
    assert r.exit_code == 1
    assert "1 source(s) refused" in r.stderr
    row = report(r)["by_key"]["network/terraform.tfstate"]
    assert row["result"] == "refused"
    assert "InternalError" in row["detail"] and "a later run continues" in row["detail"]
    svc = svc_of(data)
    assert [v.seq for v in svc.history.history(ADMIN, "network")] == [1]
    assert len(svc.history.history(ADMIN, "network/prod")) == len(
        source.versions("env:/prod/network/terraform.tfstate")
    )
    monkeypatch.setattr(s3source, "boto_client", real)
    again = import_s3(data, source, "--versions")
    assert again.exit_code == 0, again.output
    doc = report(again)
    assert doc["totals"]["imported_versions"] == 2 and doc["totals"]["up_to_date"] == 3
    assert doc["by_key"]["network/terraform.tfstate"]["detail"].endswith("1 already present")
    assert bodies(svc, "network") == [b for _, b, _ in source.versions("network/terraform.tfstate")]


def test_import_refuses_a_path_with_another_history(
    source: Source, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    data = tmp_path / "d"
    svc = svc_of(data)
    mine = make_state(serial=9)
    svc.writes.write(ADMIN, "network", mine)
    r = import_s3(data, source, "--versions")
    assert r.exit_code == 1
    row = report(r)["by_key"]["network/terraform.tfstate"]
    assert row["result"] == "refused" and "already has a different history" in row["detail"]
    assert bodies(svc, "network") == [mine]
    assert len(svc.history.history(ADMIN, "network/staging")) >= 2  # the others went on


def test_import_refused_while_the_path_is_locked(
    source: Source, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    data = tmp_path / "d"
    svc = svc_of(data)
    svc.locks.lock(ADMIN, "network/prod", lock_body(who="bob@laptop"))
    r = import_s3(data, source)
    assert r.exit_code == 1
    row = report(r)["by_key"]["env:/prod/network/terraform.tfstate"]
    assert row["result"] == "refused" and "locked by bob@laptop" in row["detail"]
    assert "network/prod" not in [s.path for s in svc.history.list_states(ADMIN)]
    assert svc.writes.read(ADMIN, "network") is not None


def test_dry_run_writes_nothing(source: Source, aws: None, tmp_path: Path, svc_of: Any) -> None:
    data = tmp_path / "d"
    r = import_s3(data, source, "--versions", "--dry-run")
    assert r.exit_code == 0, r.output
    doc = report(r)
    assert doc["dry_run"] and doc["totals"]["imported_versions"] == 0
    assert doc["by_key"]["network/terraform.tfstate"]["result"] == "would import"
    assert doc["totals"]["would_import_versions"] >= 3 + 2 + 2 + 1
    svc = svc_of(data)
    assert svc.history.list_states(ADMIN) == []
    assert not [p for p in (data / "blobs").rglob("*") if p.is_file()]
    text = run(
        data, "import", "s3", "--bucket", source.bucket, "--endpoint-url", source.url, "--dry-run"
    )
    assert "dry run: would import 4 version(s)" in text.stdout


def test_keys_on_one_path_are_refused_before_anything_is_written(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    s3 = s3_client(moto_s3)
    bucket = f"clash-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    put = {
        "network/terraform.tfstate": make_state(1),
        "network.tfstate": make_state(2),
        "other/terraform.tfstate": make_state(3),
        "junk/terraform.tfstate": b"<html>not a state</html>",
        "junk.tfstate": make_state(4),
    }
    for key, body in put.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    src = Source(moto_s3, bucket, {})
    data = tmp_path / "d"
    r = import_s3(data, src)
    assert r.exit_code == 1
    assert "nothing imported: several keys map to the same path" in r.stderr
    assert "network <- 'network.tfstate', 'network/terraform.tfstate'" in r.stderr
    assert "junk" not in r.stderr  # one of the two is not a state: no clash
    assert svc_of(data).history.list_states(ADMIN) == []
    ok = import_s3(data, src, "--map", "network.tfstate=legacy/network")
    assert ok.exit_code == 0, ok.output
    assert report(ok)["by_key"]["junk/terraform.tfstate"]["detail"].startswith("not a state")
    svc = svc_of(data)
    assert {s.path for s in svc.history.list_states(ADMIN)} == {
        "network",
        "legacy/network",
        "other",
        "junk",
    }
    state = svc.writes.read(ADMIN, "legacy/network")
    assert state is not None and state.body == put["network.tfstate"]
    skip = import_s3(tmp_path / "e", src, "--map", "network.tfstate=-")
    assert skip.exit_code == 0, skip.output
    assert report(skip)["by_key"]["network.tfstate"]["detail"] == s3layout.SKIP_MAPPED
    bad = import_s3(tmp_path / "f", src, "--map", "nope.tfstate=x")
    assert bad.exit_code == 1 and "not found" in bad.stderr
    bad = import_s3(tmp_path / "f", src, "--map", "network.tfstate=a//b")
    assert bad.exit_code == 1 and "empty segment" in bad.stderr


def test_paths_stateward_refuses_are_reported(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    s3 = s3_client(moto_s3)
    bucket = f"odd-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    put = {
        "bad name/terraform.tfstate": make_state(1),
        "notes/bad name.txt": b"hello",
        "env:/lock/svc/terraform.tfstate": make_state(2),
        "terraform.tfstate": make_state(3),
        "env:/dev/terraform.tfstate": make_state(4),
        "teams/a/net/terraform.tfstate": make_state(5),
        "env:/qa/teams/a/net/terraform.tfstate": make_state(6),
        "env:/qa/teams/b/net/terraform.tfstate": make_state(7),
    }
    for key, body in put.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    src = Source(moto_s3, bucket, {})
    r = import_s3(tmp_path / "d", src)
    assert r.exit_code == 1
    rows = report(r)["by_key"]
    assert rows["bad name/terraform.tfstate"]["result"] == "refused"
    assert "not a valid stateward path" in rows["bad name/terraform.tfstate"]["detail"]
    assert rows["notes/bad name.txt"]["result"] == "skipped"  # not a state anyway
    assert "reserved" in rows["env:/lock/svc/terraform.tfstate"]["detail"]
    assert "--path-prefix" in rows["terraform.tfstate"]["detail"]
    assert rows["teams/a/net/terraform.tfstate"]["path"] == "teams/a/net"
    assert rows["env:/qa/teams/a/net/terraform.tfstate"]["path"] == "teams/a/net/qa"
    # with a path prefix the bare key has a home; with --prefix only that team is taken
    r = import_s3(tmp_path / "e", src, "--path-prefix", "legacy", "--prefix", "teams/a")
    assert r.exit_code == 0, r.output
    assert {row["key"]: row["path"] for row in report(r)["rows"]} == {
        "teams/a/net/terraform.tfstate": "legacy/net",
        "env:/qa/teams/a/net/terraform.tfstate": "legacy/net/qa",
    }
    r = import_s3(tmp_path / "f", src, "--path-prefix", "legacy")
    rows = report(r)["by_key"]
    assert rows["terraform.tfstate"]["path"] == "legacy"
    assert rows["env:/dev/terraform.tfstate"]["path"] == "legacy/dev"
    state = svc_of(tmp_path / "f").writes.read(ADMIN, "legacy/dev")
    assert state is not None and state.body == put["env:/dev/terraform.tfstate"]


def test_import_is_audited(source: Source, aws: None, tmp_path: Path, svc_of: Any) -> None:
    data = tmp_path / "d"
    assert import_s3(data, source, "--versions").exit_code == 0
    svc = svc_of(data)
    records = list(svc.audit.audit_records(ADMIN, AuditQuery(path="network")))
    history = source.versions("network/terraform.tfstate")
    assert [r.version for r in records] == [1, 2, 3]
    for record, (vid, body, _) in zip(records, history, strict=True):
        assert (record.action, record.outcome, record.path) == ("admin", "ok", "network")
        where = f"s3://{source.bucket}/network/terraform.tfstate?versionId={vid}"
        assert record.operation == f"cli import s3 {where}"
        assert record.principal.startswith("cli:") and record.bytes_in == len(body)
    assert records[-1].serial == 3
    records = svc.audit.audit_records(ADMIN, AuditQuery())
    command = [r for r in records if r.operation == "cli import s3"]
    assert len(command) == 1 and command[0].action == "admin" and command[0].outcome == "ok"
    events = [e for e in svc.admin.events(ADMIN, "network") if e.action == "import"]
    assert sorted(e.detail for e in events)[0].startswith("seq=1 from s3://")
    every = json.dumps([r.to_dict() for r in svc.audit.audit_records(ADMIN, AuditQuery())])
    assert NEEDLE not in every and NEEDLE.encode() in history[0][1]
    assert svc.audit.verify_audit(ADMIN).ok


def test_import_files(tmp_path: Path, svc_of: Any) -> None:
    """Local files, oldest first, as they are: history may go backwards (serial, lineage)."""
    files = []
    for i, body in enumerate((make_state(serial=5), make_state(serial=2), TOFU_STATE)):
        file = tmp_path / f"{i}.tfstate"
        file.write_bytes(body)
        os.utime(file, (1_700_000_000 + i * 60, 1_700_000_000 + i * 60))
        files.append(str(file))
    data = tmp_path / "d"
    r = run(data, "import", "file", *files, "--path", "team/x", "--json")
    assert r.exit_code == 0, r.output
    assert report(r)["totals"]["imported_versions"] == 3
    svc = svc_of(data)
    assert bodies(svc, "team/x") == [Path(f).read_bytes() for f in files]
    hist = sorted(svc.history.history(ADMIN, "team/x"), key=lambda v: v.seq)
    assert [v.created_at for v in hist] == [1_700_000_000.0, 1_700_000_060.0, 1_700_000_120.0]
    assert [v.serial for v in hist] == [5, 2, 3] and hist[-1].client_encrypted
    again = run(data, "import", "file", *files, "--path", "team/x")
    assert again.exit_code == 0 and "nothing new to import" in again.stdout
    (tmp_path / "bad.tfstate").write_text('{"version": 3}')
    bad = run(data, "import", "file", files[0], str(tmp_path / "bad.tfstate"), "--path", "team/y")
    assert bad.exit_code == 1 and "bad.tfstate: not a state" in bad.stderr
    assert "team/y" not in [s.path for s in svc.history.list_states(ADMIN)]
    # the imported OpenTofu state decrypts with the vector's passphrase
    out = run(data, "pull", "team/x")
    enc = tmp_path / "enc.toml"
    enc.write_text(
        f'[key_provider.pbkdf2.main]\npassphrase = "{TOFU_PASSPHRASE}"\n'
        '[method.aes_gcm.m]\nkeys = "key_provider.pbkdf2.main"\n'
        '[state]\nmethod = "method.aes_gcm.m"\n'
    )
    pulled = tmp_path / "pulled.tfstate"
    pulled.write_bytes(out.stdout_bytes)
    dec = run(data, "tofu", "decrypt", "--config", str(enc), str(pulled))
    assert dec.exit_code == 0, dec.output
    assert dec.stdout_bytes == TOFU_PLAINTEXT


def _spy_on_gets(
    monkeypatch: pytest.MonkeyPatch,
    gets: list[dict[str, Any]],
    answer: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """The CLI's S3 clients record every GetObject's parameters (``answer`` may rewrite
    what S3 answered)."""
    real = s3source.boto_client

    def client_factory(*args: Any, **kw: Any) -> Any:
        client = real(*args, **kw)
        get_object = client.get_object

        def get(**params: Any) -> Any:
            gets.append(params)
            got = get_object(**params)
            return got if answer is None else answer(got)

        client.get_object = get
        return client

    monkeypatch.setattr(s3source, "boto_client", client_factory)


def _versioned_bucket(url: str, name: str) -> tuple[Any, str]:
    s3 = s3_client(url)
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return s3, bucket


def test_import_s3_skips_objects_over_max_body_bytes_unread(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listed size decides, before any GET: a current object over the limit skips its
    key, an older version over it is left out; each is reported."""
    limit = 4096
    monkeypatch.setenv("STATEWARD_MAX_BODY_BYTES", str(limit))
    s3, bucket = _versioned_bucket(moto_s3, "big")
    lineage = str(uuid.uuid4())
    small1, big, small3 = (
        make_state(1, lineage),
        make_state(2, lineage, pad=3 * limit),
        make_state(3, lineage),
    )
    for body in (small1, big, small3):
        s3.put_object(Bucket=bucket, Key="app/terraform.tfstate", Body=body)
    huge = make_state(pad=4 * limit)
    s3.put_object(Bucket=bucket, Key="huge/terraform.tfstate", Body=huge)
    src = Source(moto_s3, bucket, {})
    big_vid = src.versions("app/terraform.tfstate")[1][0]
    gets: list[dict[str, Any]] = []
    _spy_on_gets(monkeypatch, gets)
    r = import_s3(tmp_path / "d", src, "--versions")
    assert r.exit_code == 0, r.output
    rows = report(r)["by_key"]
    assert (rows["huge/terraform.tfstate"]["result"], rows["huge/terraform.tfstate"]["detail"]) == (
        "skipped",
        f"larger than max_body_bytes ({limit} bytes): {len(huge)} bytes",
    )
    big_ref = f"s3://{bucket}/app/terraform.tfstate?versionId={big_vid}"
    assert (rows[big_ref]["result"], rows[big_ref]["detail"]) == (
        "skipped",
        f"larger than max_body_bytes ({limit} bytes): {len(big)} bytes",
    )
    assert (rows["app/terraform.tfstate"]["result"], rows["app/terraform.tfstate"]["versions"]) == (
        "imported",
        2,
    )
    assert bodies(svc_of(tmp_path / "d"), "app") == [small1, small3]
    assert gets and not [
        g for g in gets if g["Key"] == "huge/terraform.tfstate" or g.get("VersionId") == big_vid
    ]
    # current objects only: the same by the size ListObjectsV2 gives
    gets.clear()
    r = import_s3(tmp_path / "e", src)
    assert r.exit_code == 0, r.output
    rows = report(r)["by_key"]
    assert rows["huge/terraform.tfstate"]["result"] == "skipped"
    assert rows["huge/terraform.tfstate"]["detail"].startswith("larger than max_body_bytes")
    assert rows["app/terraform.tfstate"]["result"] == "imported"
    assert [g["Key"] for g in gets] == ["app/terraform.tfstate"]


def test_import_s3_reads_at_most_the_limit(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object that grew after it was listed: refused by its Content-Length unread, and
    without one, by reading at most limit + 1 bytes."""
    limit = 4096
    monkeypatch.setenv("STATEWARD_MAX_BODY_BYTES", str(limit))
    s3 = s3_client(moto_s3)
    bucket = f"grown-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    grown = make_state(pad=4 * limit)
    s3.put_object(Bucket=bucket, Key="grown/terraform.tfstate", Body=grown)
    real_list = cli_imports.list_current

    def listed_small(*args: Any) -> dict[str, list[s3source.ObjectVersion]]:
        return {
            key: [s3source.ObjectVersion(v.key, v.version_id, v.modified, 10) for v in found]
            for key, found in real_list(*args).items()
        }

    monkeypatch.setattr(cli_imports, "list_current", listed_small)
    reads: list[int | None] = []

    class Body:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def read(self, amt: int | None = None) -> bytes:
            reads.append(amt)
            return bytes(self.inner.read(amt))

        def close(self) -> None:
            self.inner.close()

    def spied(answer: dict[str, Any]) -> dict[str, Any]:
        return answer | {"Body": Body(answer["Body"])}

    gets: list[dict[str, Any]] = []
    _spy_on_gets(monkeypatch, gets, spied)
    r = import_s3(tmp_path / "d", Source(moto_s3, bucket, {}))
    assert r.exit_code == 0, r.output
    row = report(r)["by_key"]["grown/terraform.tfstate"]
    assert (row["result"], row["detail"]) == (
        "skipped",
        f"larger than max_body_bytes ({limit} bytes): {len(grown)} bytes",
    )
    assert gets and reads == []  # Content-Length said so: not read at all

    def no_length(answer: dict[str, Any]) -> dict[str, Any]:  # on top of the spy above
        return {k: v for k, v in answer.items() if k != "ContentLength"}

    _spy_on_gets(monkeypatch, gets, no_length)
    r = import_s3(tmp_path / "e", Source(moto_s3, bucket, {}))
    assert r.exit_code == 0, r.output
    row = report(r)["by_key"]["grown/terraform.tfstate"]
    assert (row["result"], row["detail"]) == (
        "skipped",
        f"larger than max_body_bytes ({limit} bytes)",
    )
    assert reads == [limit + 1]
    assert svc_of(tmp_path / "e").history.list_states(ADMIN) == []


def test_import_file_checks_the_size_before_reading(
    tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 4096
    monkeypatch.setenv("STATEWARD_MAX_BODY_BYTES", str(limit))
    ok, big = tmp_path / "a.tfstate", tmp_path / "b.tfstate"
    ok.write_bytes(make_state(1))
    big.write_bytes(make_state(2, pad=4 * limit))
    opened: list[Path] = []
    real_open = Path.open

    def spy(self: Path, *args: Any, **kw: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kw)

    monkeypatch.setattr(Path, "open", spy)
    data = tmp_path / "d"
    r = run(data, "import", "file", str(ok), str(big), "--path", "team/x")
    assert r.exit_code == 1
    size = big.stat().st_size
    assert f"b.tfstate: larger than max_body_bytes ({limit} bytes): {size} bytes" in r.stderr
    assert "nothing imported" in r.stderr
    assert big not in opened
    assert svc_of(data).writes.read(ADMIN, "team/x") is None


def test_import_reads_the_null_version(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    """Serial 1 written before versioning was enabled (S3 lists it as version "null"), serials
    2 and 3 after: --versions imports 1, 2, 3, the first recorded as ?versionId=null."""
    s3 = s3_client(moto_s3)
    bucket = f"null-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    lineage = str(uuid.uuid4())
    states = [make_state(n, lineage) for n in (1, 2, 3)]
    s3.put_object(Bucket=bucket, Key="x/terraform.tfstate", Body=states[0])
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in states[1:]:
        s3.put_object(Bucket=bucket, Key="x/terraform.tfstate", Body=body)
    listed = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert "null" in [v["VersionId"] for v in listed]
    src = Source(moto_s3, bucket, {})
    data = tmp_path / "d"
    r = import_s3(data, src, "--versions")
    assert r.exit_code == 0, r.output
    assert report(r)["by_key"]["x/terraform.tfstate"]["versions"] == 3
    svc = svc_of(data)
    assert bodies(svc, "x") == states
    hist = sorted(svc.history.history(ADMIN, "x"), key=lambda v: v.seq)
    assert [v.serial for v in hist] == [1, 2, 3]
    records = list(svc.audit.audit_records(ADMIN, AuditQuery(path="x")))
    where = f"s3://{bucket}/x/terraform.tfstate?versionId=null"
    assert records[0].version == 1 and records[0].operation == f"cli import s3 {where}"
    again = import_s3(data, src, "--versions")
    assert again.exit_code == 0 and report(again)["totals"]["imported_versions"] == 0


def test_import_s3_resumes_after_retention(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    """Two versions imported, retention keeps one, two more written to the source: the next
    import adds those two, in order (the source is read twice, reported once)."""
    s3, bucket = _versioned_bucket(moto_s3, "retained")
    lineage = str(uuid.uuid4())
    states = [make_state(n, lineage) for n in (1, 2, 3, 4)]
    key = "app/terraform.tfstate"
    s3.put_object(Bucket=bucket, Key=key, Body=states[0])
    s3.put_object(Bucket=bucket, Key=key, Body=b"not a state")
    s3.put_object(Bucket=bucket, Key=key, Body=states[1])
    src = Source(moto_s3, bucket, {})
    data = tmp_path / "d"
    r = import_s3(data, src, "--versions")
    assert r.exit_code == 0, r.output
    assert report(r)["by_key"][key]["versions"] == 2
    svc = svc_of(data, retention=[RetentionRule(path="**", keep_versions=1)])
    assert svc.admin.run_maintenance(ADMIN).to_dict()["versions_removed"] == 1
    assert [v.seq for v in svc.history.history(ADMIN, "app")] == [2]
    for body in states[2:]:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    r = import_s3(data, src, "--versions")
    assert r.exit_code == 0, r.output
    doc = report(r)
    row = doc["by_key"][key]
    assert (row["result"], row["versions"]) == ("imported", 2)
    assert row["detail"].startswith("as versions 3-4")
    assert len([x for x in doc["rows"] if x["detail"].startswith("not a state")]) == 1
    assert bodies(svc, "app") == states[1:]
    again = import_s3(data, src, "--versions")
    assert again.exit_code == 0 and report(again)["by_key"][key]["result"] == "up to date"


# -- the service operation ---------------------------------------------------------------------


def _src(body: bytes, n: int = 0, at: float | None = None) -> ImportSource:
    return ImportSource(f"test://{n}", body, at)


def test_service_import_rules(store: Store, tmp_path: Path) -> None:
    svc = store.build(
        tmp_path / "d",
        client_encryption=[ClientEncryptionRule(paths=["secure/**"])],
        max_body_bytes=64 * 1024,
    )
    lineage = str(uuid.uuid4())
    a, b = make_state(serial=7, lineage=lineage), make_state(serial=3, lineage=lineage)
    c = make_state(serial=3, lineage=lineage, resources=2)  # serials go back, and repeat
    other = make_state(serial=1)  # another lineage
    sources = [_src(a, 1, 1000.0), _src(a, 2), _src(b, 3, 3000.0)]
    res = svc.imports.import_state(ADMIN, "p/x", sources)
    assert (res.imported, res.duplicates, res.present) == ((1, 2), 1, 0)
    res = svc.imports.import_state(ADMIN, "p/x", [_src(a), _src(b), _src(c), _src(other)])
    assert (res.imported, res.present) == ((3, 4), 2)
    hist = sorted(svc.history.history(ADMIN, "p/x"), key=lambda v: v.seq)
    assert [(v.serial, v.kind) for v in hist] == [
        (7, "import"),
        (3, "import"),
        (3, "import"),
        (1, "import"),
    ]
    assert hist[0].created_at == 1000.0 and hist[1].created_at == 3000.0
    # a normal write still meets the guards afterwards
    with pytest.raises(Conflict):
        svc.writes.write(ADMIN, "p/x", make_state(serial=1, lineage=lineage))
    # dry run: checked, nothing written
    res = svc.imports.import_state(ADMIN, "p/y", [_src(a), _src(b)], dry_run=True)
    assert (res.pending, res.imported) == (2, ()) and svc.writes.read(ADMIN, "p/y") is None
    # every other check of a write
    with pytest.raises(Forbidden, match="requires OpenTofu client-side encryption"):
        svc.imports.import_state(ADMIN, "secure/x", [_src(a)])
    assert svc.imports.import_state(ADMIN, "secure/x", [_src(TOFU_STATE)]).imported == (1,)
    with pytest.raises(TooLarge):
        svc.imports.import_state(ADMIN, "p/big", [_src(a), _src(make_state(pad=70 * 1024))])
    assert [v.seq for v in svc.history.history(ADMIN, "p/big")] == [1]  # the prefix stays
    with pytest.raises(BadRequest, match="not valid JSON"):
        svc.imports.import_state(ADMIN, "p/bad", [_src(b"nope")])
    with pytest.raises(BadRequest, match="empty segment"):
        svc.imports.import_state(ADMIN, "p//bad", [_src(a)])
    svc.locks.lock(ADMIN, "p/locked", lock_body())
    with pytest.raises(Locked):
        svc.imports.import_state(ADMIN, "p/locked", [_src(a)])
    # a different history is refused, unless the current version already matches
    with pytest.raises(Conflict, match="already has a different history"):
        svc.imports.import_state(ADMIN, "p/x", [_src(b), _src(a)])
    assert svc.imports.import_state(ADMIN, "p/x", [_src(b), _src(other)]).current_matches
    # a write during the import: the import stops rather than stack on top of it

    def racing() -> Iterator[ImportSource]:
        yield _src(a)
        svc.writes.write(ADMIN, "p/race", make_state(serial=9, lineage=lineage))
        yield _src(b)

    with pytest.raises(Conflict, match="changed while it was being imported"):
        svc.imports.import_state(ADMIN, "p/race", racing())
    assert [v.kind for v in sorted(svc.history.history(ADMIN, "p/race"), key=lambda v: v.seq)] == [
        "import",
        "write",
    ]


def test_service_import_needs_admin_on_the_path(store: Store, tmp_path: Path) -> None:
    roles = {
        "team-admin": Role(rules=(Rule(actions=("*",), paths=("team/**",)),)),
    }
    svc = store.build(tmp_path / "d", roles=roles)
    body = make_state()
    writer = Principal("w", roles=("writer",))  # built in: read, write, lock, unlock
    team = Principal("t", roles=("team-admin",))
    with audit_context.begin("cli import file", "cli") as ctx:
        ctx.who = writer
        with pytest.raises(Forbidden, match="does not grant admin"):
            svc.imports.import_state(writer, "team/x", [_src(body)])
    assert svc.writes.read(ADMIN, "team/x") is None
    denied = [r for r in svc.audit.audit_records(ADMIN, AuditQuery(path="team/x"))]
    assert [(r.outcome, r.action, r.principal) for r in denied] == [("denied", "admin", "w")]
    assert svc.imports.import_state(team, "team/x", [_src(body)]).imported == (1,)
    with pytest.raises(Forbidden):
        svc.imports.import_state(team, "other/x", [_src(body)])


def test_resume_point_is_the_last_match_after_a_subsequence() -> None:
    assert resume_point([], ["a", "b"]) == -1
    assert resume_point(["b"], ["a", "b", "c", "d"]) == 1
    assert resume_point(["a", "c"], ["a", "b", "c", "d"]) == 2  # b removed by retention
    assert resume_point(["b"], ["a", "b", "c", "b", "d"]) == 3  # the last one
    assert resume_point(["c", "b"], ["a", "b", "c", "b", "d"]) == 3
    assert resume_point(["c", "a"], ["a", "b", "c"]) is None  # another order
    assert resume_point(["x"], ["a", "b"]) is None


class _Twice:
    """Sources that may be read twice; ``second`` replaces them on the second read."""

    def __init__(self, first: list[ImportSource], second: list[ImportSource] | None = None):
        self.reads = 0
        self.first, self.second = first, second

    def __iter__(self) -> Iterator[ImportSource]:
        self.reads += 1
        items = self.first if self.reads == 1 or self.second is None else self.second
        return iter(items)


def test_service_import_resumes_after_retention(store: Store, tmp_path: Path) -> None:
    """Import 2 of 4 versions, retention keeps 1, import all 4: the 2 new ones are added, in
    order -- from a list, a re-iterable, and a one-shot iterator alike."""
    svc = store.build(tmp_path / "d", retention=[RetentionRule(path="**", keep_versions=1)])
    lineage = str(uuid.uuid4())
    s = [make_state(serial=n, lineage=lineage) for n in (1, 2, 3, 4)]
    make: dict[str, Callable[[], Any]] = {
        "p/list": lambda: [_src(b, i, 1000.0 + i) for i, b in enumerate(s)],
        "p/again": lambda: _Twice([_src(b, i, 1000.0 + i) for i, b in enumerate(s)]),
        "p/gen": lambda: (_src(b, i, 1000.0 + i) for i, b in enumerate(s)),
    }
    for path in make:
        assert svc.imports.import_state(ADMIN, path, [_src(b) for b in s[:2]]).imported == (1, 2)
    assert svc.admin.run_maintenance(ADMIN).to_dict()["versions_removed"] == 3
    for path, sources in make.items():
        assert [v.seq for v in svc.history.history(ADMIN, path)] == [2], path
        dry = svc.imports.import_state(ADMIN, path, sources(), dry_run=True)
        assert (dry.pending, dry.imported, dry.present) == (2, (), 2), path
        res = svc.imports.import_state(ADMIN, path, sources())
        assert (res.imported, res.present, res.pending) == ((3, 4), 2, 2), path
        hist = sorted(svc.history.history(ADMIN, path), key=lambda v: v.seq)
        assert [(v.seq, v.serial, v.kind) for v in hist] == [
            (2, 2, "import"),
            (3, 3, "import"),
            (4, 4, "import"),
        ], path
        assert [v.created_at for v in hist[1:]] == [1002.0, 1003.0], path
        again = svc.imports.import_state(ADMIN, path, sources())
        assert (again.pending, again.imported, again.current_matches) == (0, (), False), path
    # retention again (keeps the current one, seq 4): still up to date
    svc.admin.run_maintenance(ADMIN)
    assert svc.imports.import_state(ADMIN, "p/list", make["p/list"]()).up_to_date
    # a repeated state: the import continues after its last occurrence
    a, b, c = s[0], s[1], s[2]
    svc.imports.import_state(ADMIN, "p/rep", [_src(a), _src(b)])
    svc.admin.run_maintenance(ADMIN)  # leaves b
    res = svc.imports.import_state(ADMIN, "p/rep", [_src(a), _src(b), _src(c), _src(b), _src(s[3])])
    assert (res.imported, res.present) == ((3,), 4)
    # the path's versions in another order than the source's: refused as before
    svc.imports.import_state(ADMIN, "p/order", [_src(c), _src(a)])
    with pytest.raises(Conflict, match="already has a different history"):
        svc.imports.import_state(ADMIN, "p/order", [_src(a), _src(b), _src(c), _src(s[3])])
    # a source that changes between its two reads: refused before anything is written
    svc.imports.import_state(ADMIN, "p/changed", [_src(a), _src(b)])
    svc.admin.run_maintenance(ADMIN)
    twice = _Twice([_src(x) for x in s], [_src(x) for x in (a, b, s[3], c)])
    with pytest.raises(Conflict, match="changed during the import"):
        svc.imports.import_state(ADMIN, "p/changed", twice)
    assert [v.seq for v in svc.history.history(ADMIN, "p/changed")] == [2]


# -- export ------------------------------------------------------------------------------------


def _objects(src: Source, bucket: str, prefix: str = "") -> dict[str, bytes]:
    s3 = src.client()
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_export_to_s3_round_trips_and_terraform_reads_it(
    source: Source, aws: None, tmp_path: Path, svc_of: Any
) -> None:
    data = tmp_path / "d"
    assert import_s3(data, source, "--versions").exit_code == 0
    dst = f"exported-{uuid.uuid4().hex[:8]}"
    source.client().create_bucket(Bucket=dst)
    r = run(
        data,
        "export",
        f"s3://{dst}/migrated/",
        "--plaintext",
        "--endpoint-url",
        source.url,
        "--region",
        REGION,
    )
    assert r.exit_code == 0, r.output
    assert f"exported 4 state(s) to s3://{dst}/migrated/ (3 plaintext, 1 client-encrypted)" in (
        r.stdout
    )
    assert 'key          = "migrated/network/terraform.tfstate"' in r.stdout
    objects = _objects(source, dst)
    assert set(objects) == {
        "migrated/network/terraform.tfstate",
        "migrated/network/staging/terraform.tfstate",
        "migrated/network/prod/terraform.tfstate",
        "migrated/tofu/terraform.tfstate",
    }
    # the default workspace's objects come back byte for byte
    assert objects["migrated/network/terraform.tfstate"] == source.current(
        "network/terraform.tfstate"
    )
    assert objects["migrated/tofu/terraform.tfstate"] == TOFU_STATE
    assert objects["migrated/network/staging/terraform.tfstate"] == source.current(
        "env:/staging/network/terraform.tfstate"
    )
    head = source.client().head_object(Bucket=dst, Key="migrated/network/terraform.tfstate")
    assert head["ContentType"] == "application/json"
    # and import reads the export back to the same paths
    back = import_s3(tmp_path / "e", source, "--prefix", "migrated", bucket=dst)
    assert back.exit_code == 0, back.output
    assert {r["key"]: r["path"] for r in report(back)["rows"]} == {
        "migrated/network/terraform.tfstate": "network",
        "migrated/network/staging/terraform.tfstate": "network/staging",
        "migrated/network/prod/terraform.tfstate": "network/prod",
        "migrated/tofu/terraform.tfstate": "tofu",
    }
    # a directory export has the same layout and bytes
    out = tmp_path / "out"
    r = run(data, "export", str(out), "--plaintext")
    assert r.exit_code == 0, r.output
    for key, body in objects.items():
        assert (out / key.removeprefix("migrated/")).read_bytes() == body
    # Terraform's S3 backend reads the exported state: same config, no changes to make
    work = tmp_path / "tf"
    work.mkdir()
    (work / "main.tf").write_text(tf_config(source.url, dst, "migrated/network/terraform.tfstate"))
    terraform(work, source.env, "init", "-input=false", "-no-color")
    outputs = json.loads(terraform(work, source.env, "output", "-json").stdout)
    assert outputs["n"]["value"] == 3 and outputs["tag"]["value"] == NEEDLE
    plan = subprocess.run(
        [TERRAFORM_111, "plan", "-input=false", "-no-color", "-detailed-exitcode", "-var=n=3"],
        cwd=work,
        env=source.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr  # 0: no changes
    assert "No changes" in plan.stdout


def _enc_config(file: Path, env_var: str) -> None:
    file.write_text(
        f'[key_provider.pbkdf2.main]\npassphrase_env = "{env_var}"\niterations = 200000\n'
        '[method.aes_gcm.m]\nkeys = "key_provider.pbkdf2.main"\n'
        '[state]\nmethod = "method.aes_gcm.m"\n'
    )


def test_export_policy_per_path(
    moto_s3: str, aws: None, tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    svc = svc_of(data)
    prod = make_state(outputs={"db": {"value": "prod-secret-value", "type": "string"}})
    dev = make_state()
    svc.writes.write(ADMIN, "prod/db", prod)
    svc.writes.write(ADMIN, "dev/app", dev)
    svc.writes.write(ADMIN, "prod/enc", TOFU_STATE)
    conf = tmp_path / "conf"
    conf.mkdir()
    _enc_config(conf / "prod-enc.toml", "PROD_EXPORT_PASS")
    monkeypatch.setenv("PROD_EXPORT_PASS", "a passphrase for prod exports")
    policy = conf / "export.toml"
    policy.write_text(
        '[[rule]]\npaths = ["prod/**"]\ntofu_config = "prod-enc.toml"\n\n'
        '[[rule]]\npaths = ["**"]\nplaintext = true\n'
    )
    out = tmp_path / "out"
    r = run(data, "export", str(out), "--policy", str(policy))
    assert r.exit_code == 0, r.output
    assert "exported 3 state(s)" in r.stdout and "1 encrypted, 1 plaintext, 1 client-encrypted" in (
        r.stdout
    )
    encrypted = out / "prod/db/terraform.tfstate"
    assert b"prod-secret-value" not in encrypted.read_bytes()
    assert b'"encryption_version":"v0"' in encrypted.read_bytes()
    dec = run(data, "tofu", "decrypt", "--config", str(conf / "prod-enc.toml"), str(encrypted))
    assert dec.exit_code == 0, dec.output
    assert dec.stdout_bytes == prod
    assert (out / "dev/app/terraform.tfstate").read_bytes() == dev
    assert (out / "prod/enc/terraform.tfstate").read_bytes() == TOFU_STATE
    # the same policy to an S3 prefix
    s3 = s3_client(moto_s3)
    bucket = f"policy-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    r = run(data, "export", f"s3://{bucket}/x", "--policy", str(policy), "--endpoint-url", moto_s3)
    assert r.exit_code == 0, r.output
    src = Source(moto_s3, bucket, {})
    objects = _objects(src, bucket)
    assert objects["x/dev/app/terraform.tfstate"] == dev
    assert b"prod-secret-value" not in objects["x/prod/db/terraform.tfstate"]
    # a policy must cover every exported path, and say one thing per rule
    partial = conf / "partial.toml"
    partial.write_text('[[rule]]\npaths = ["prod/**"]\nplaintext = true\n')
    r = run(data, "export", str(tmp_path / "none"), "--policy", str(partial))
    assert r.exit_code == 1 and "covers dev/app" in r.stderr
    assert not (tmp_path / "none").exists()
    both = conf / "both.toml"
    both.write_text('[[rule]]\npaths = ["**"]\nplaintext = true\ntofu_config = "prod-enc.toml"\n')
    r = run(data, "export", str(tmp_path / "none"), "--policy", str(both))
    assert r.exit_code == 1 and "exactly one of tofu_config" in r.stderr
    r = run(data, "export", str(tmp_path / "none"), "--plaintext", "--policy", str(policy))
    assert r.exit_code == 1 and "exactly one of" in r.stderr
    r = run(data, "export", str(tmp_path / "none"), "--plaintext", "--region", REGION)
    assert r.exit_code == 1 and "s3:// destination" in r.stderr


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directory_export_never_writes_through_prepared_files(tmp_path: Path, svc_of: Any) -> None:
    """A 0666 ``terraform.tfstate.tmp`` and symlinks planted in the destination are neither
    reused nor followed: each state lands in a new 0600 file; new directories are 0700."""
    data = tmp_path / "d"
    svc = svc_of(data)
    one, two = make_state(1), make_state(2)
    svc.writes.write(ADMIN, "one", one)
    svc.writes.write(ADMIN, "two", two)
    out = tmp_path / "out"
    (out / "one").mkdir(parents=True)
    (out / "two").mkdir()
    planted = out / "one" / "terraform.tfstate.tmp"
    planted.write_bytes(b"planted")
    planted.chmod(0o666)
    victim, victim2 = tmp_path / "victim", tmp_path / "victim2"
    victim.write_bytes(b"victim")
    victim2.write_bytes(b"victim2")
    (out / "two" / "terraform.tfstate.tmp").symlink_to(victim)
    (out / "two" / "terraform.tfstate").symlink_to(victim2)
    r = run(data, "export", str(out), "--plaintext")
    assert r.exit_code == 0, r.output
    for path, body in (("one", one), ("two", two)):
        file = out / path / "terraform.tfstate"
        assert stat.S_ISREG(os.lstat(file).st_mode), path
        assert _mode(file) == 0o600, path
        assert file.read_bytes() == body
    assert planted.read_bytes() == b"planted" and _mode(planted) == 0o666
    assert (out / "two" / "terraform.tfstate.tmp").is_symlink()
    assert victim.read_bytes() == b"victim" and victim2.read_bytes() == b"victim2"
    assert not list(out.rglob(".terraform.tfstate.*"))  # no temporary file left behind
    fresh = tmp_path / "new" / "deep" / "out"
    r = run(data, "export", str(fresh), "--plaintext")
    assert r.exit_code == 0, r.output
    for d in (tmp_path / "new", tmp_path / "new" / "deep", fresh, fresh / "one"):
        assert _mode(d) == 0o700, d
    assert _mode(fresh / "one" / "terraform.tfstate") == 0o600


def test_directory_export_refuses_a_directory_others_control(
    tmp_path: Path, svc_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d"
    svc_of(data).writes.write(ADMIN, "one", make_state(1))

    def refused(dest: Path, why: str) -> None:
        r = run(data, "export", str(dest), "--plaintext")
        assert r.exit_code == 1, r.output
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "nothing exported" in r.stderr and why in r.stderr, r.stderr
        assert not [p for p in dest.rglob("*") if p.is_file()]

    for mode in (0o777, 0o770, 0o1777):
        shared = tmp_path / f"shared-{mode:o}"
        shared.mkdir()
        shared.chmod(mode)
        refused(shared, f"group- or world-writable (mode {mode:04o})")
    inner = tmp_path / "inner"
    (inner / "one").mkdir(parents=True)
    (inner / "one").chmod(0o757)
    refused(inner, f"{inner / 'one'} is group- or world-writable")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    if os.geteuid() == 0:
        os.chown(theirs, 4242, 4242)
    else:
        uid = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    refused(theirs, "not owned by the current user")
