"""checkov, from PyPI, in a virtualenv of its own.

checkov pins many packages (an older boto3/botocore among them) that conflict with the
project's environment, so the tests install it once into ``.venv-checkov`` at the repository
root (ignored by git: the directory carries its own ``.gitignore``) and run it from there. A
failed install fails the test: checkov is part of the suite, never skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
import venv
from pathlib import Path

CHECKOV_VERSION = "3.3.30"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-checkov"
#: The families of checks the generated module must pass (checkov ids do not say the
#: service; these resource types do).
RESOURCE_PREFIXES = ("aws_s3", "aws_kms", "aws_dynamodb", "aws_iam")


def checkov() -> Path:
    """The checkov executable, installed on first use."""
    binary = VENV / "bin" / "checkov"
    marker = VENV / f"installed-{CHECKOV_VERSION}"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"stateward-checkov-{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
            (VENV / ".gitignore").write_text("*\n")
            subprocess.run(
                [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", f"checkov=={CHECKOV_VERSION}"],
                check=True, timeout=900,
            )
            marker.write_text(CHECKOV_VERSION)
    if not binary.exists():
        raise RuntimeError(f"checkov not installed in {VENV}")
    return binary


def run(directory: Path) -> dict[str, object]:
    """checkov's JSON report for the Terraform files under ``directory`` (offline)."""
    import json

    r = subprocess.run(
        [str(checkov()), "-d", str(directory), "--framework", "terraform", "--skip-download",
         "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(directory), "BC_SKIP_MAPPING": "TRUE",
             "LOG_LEVEL": "ERROR", "PYTHONWARNINGS": "ignore"},
    )
    if r.returncode not in (0, 1):  # 1: failed checks (asserted by the caller)
        raise RuntimeError(f"checkov failed ({r.returncode}): {r.stderr[-2000:]}")
    doc = json.loads(r.stdout)
    if isinstance(doc, list):
        (doc,) = [d for d in doc if d.get("check_type") == "terraform"]
    assert isinstance(doc, dict)
    return doc

