"""Secret detection: precision/recall on the labelled catalog, and scan throughput.

Quality: every entry of ``tests/secret_catalog/catalog.jsonl`` (and, in a second table, of
``holdout.jsonl``, written after the rules were frozen) becomes a one-resource state
(see the catalog's README); per kind, a true positive is a positive entry whose finding has
that kind, a false negative a positive entry without it (missed, or reported as another kind),
a false positive any finding of that kind on a negative entry or at the wrong kind. The whole
states under ``states/`` add their ``expected.json`` findings (a finding not listed there is a
false positive, a listed one not found a false negative).

Throughput: generated Terraform v4 states of 10 MB and 100 MB (a realistic mix of AWS-like
resources with ids, ARNs, tags, policies, hashes, timestamps, and a few secrets), scanned in a
fresh child process each, which reports wall time, MB/s and its peak RSS (with, in brackets,
the RSS before scanning: interpreter, imports and the state's bytes); ``sanitize`` is then
timed on the same state.

    python benchmarks/bench_secretscan.py [--sizes 10,100] [--markdown] [--no-throughput]

Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stateward.domain.secretscan import KINDS, sanitize, scan

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the catalog's loader lives in tests/
    sys.path.insert(0, str(ROOT))

from tests.secret_catalog import CATALOG, entry_location, entry_state, load_entries  # noqa: E402

# -- quality ---------------------------------------------------------------------------------


def quality(name: str, with_states: bool) -> tuple[dict[str, Counter[str]], Counter[str]]:
    per_kind: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
    overall: Counter[str] = Counter()
    for entry in load_entries(name):
        findings = scan(entry_state(entry))
        if not entry["label"]:
            overall["tn" if not findings else "fp"] += 1
            for f in findings:
                per_kind[f.kind]["fp"] += 1
            continue
        where = entry_location(entry)
        at = [f for f in findings if where is None or f.location == where]
        kind = entry["kind"]
        if any(f.kind == kind for f in at):
            per_kind[kind]["tp"] += 1
            overall["tp"] += 1
        else:
            per_kind[kind]["fn"] += 1
            overall["fn"] += 1
            for f in at:
                per_kind[f.kind]["fp"] += 1
    expected = json.loads((CATALOG / "states" / "expected.json").read_text())
    for state_name, want in expected.items() if with_states else ():
        got = [(f.location, f.kind) for f in scan((CATALOG / "states" / state_name).read_bytes())]
        want_set = {tuple(w) for w in want}
        for loc_kind in got:
            key = "tp" if loc_kind in want_set else "fp"
            per_kind[loc_kind[1]][key] += 1
            overall[key] += 1
        for loc_kind in want_set - set(got):
            per_kind[loc_kind[1]]["fn"] += 1
            overall["fn"] += 1
    return per_kind, overall


def _ratio(num: int, den: int) -> str:
    return f"{num / den:.3f}" if den else "—"


def quality_rows(name: str, with_states: bool) -> list[list[str]]:
    per_kind, overall = quality(name, with_states)
    rows = []
    for kind in KINDS:
        c = per_kind[kind]
        if not +c:
            continue
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        rows.append([kind, str(tp), str(fp), str(fn), _ratio(tp, tp + fp), _ratio(tp, tp + fn)])
    tp, fp, fn = overall["tp"], overall["fp"], overall["fn"]
    rows.append(
        ["**overall**", str(tp), str(fp), str(fn), _ratio(tp, tp + fp), _ratio(tp, tp + fn)]
    )
    rows.append(["negatives with no finding", f"{overall['tn']} of {overall['tn'] + overall['fp']}",
                 "", "", "", ""])  # fmt: skip
    return rows


# -- throughput -------------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"


def _policy(rng: random.Random, account: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "secretsmanager:GetSecretValue",
                       "kms:Decrypt"],
            "Resource": [f"arn:aws:s3:::bucket-{rng.randrange(10**6)}/*",
                         f"arn:aws:secretsmanager:us-east-1:{account}:secret:app/db-AbCdEf"],
        }],
    })  # fmt: skip


def _resource(rng: random.Random, i: int, secret: bool) -> dict[str, Any]:
    account = "123456789012"
    hexid = "".join(rng.choice(HEX) for _ in range(17))
    key_id = uuid.UUID(int=rng.getrandbits(128))
    attrs: dict[str, Any] = {
        "ami": f"ami-{hexid}",
        "arn": f"arn:aws:ec2:us-east-1:{account}:instance/i-{hexid}",
        "id": f"i-{hexid}",
        "instance_type": rng.choice(["t3.micro", "m6i.large", "c7g.xlarge"]),
        "private_ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "subnet_id": f"subnet-{hexid}",
        "user_data": "".join(rng.choice(HEX) for _ in range(40)),
        "tags": {"Name": f"web-{i}", "Environment": "prod", "Team": "platform", "CostCenter": "42"},
        "vpc_security_group_ids": [f"sg-{hexid}"],
        "root_block_device": [
            {
                "volume_id": f"vol-{hexid}",
                "volume_size": 40,
                "encrypted": True,
                "kms_key_id": f"arn:aws:kms:us-east-1:{account}:key/{key_id}",
            }
        ],
        "iam_policy": _policy(rng, account),
        "source_code_hash": base64.b64encode(rng.randbytes(32)).decode(),
        "etag": "".join(rng.choice(HEX) for _ in range(32)),
        "created": "2024-05-01T10:00:00Z",
        "description": "managed by terraform; see the runbook for the rotation procedure",
        "environment": [{"variables": {"LOG_LEVEL": "info", "TABLE": f"orders-{i}"}}],
    }
    sensitive: list[Any] = []
    if secret:
        attrs["password"] = "".join(rng.choice(ALNUM) for _ in range(20))
        attrs["environment"][0]["variables"]["API_TOKEN"] = "ghp_" + "".join(
            rng.choice(ALNUM) for _ in range(36)
        )
        sensitive = [[{"type": "get_attr", "value": "password"}]]
    return {
        "module": f"module.app{i % 7}",
        "mode": "managed",
        "type": "aws_instance",
        "name": f"web{i}",
        "provider": 'provider["registry.terraform.io/hashicorp/aws"]',
        "instances": [{
            "index_key": j, "schema_version": 1, "attributes": attrs,
            "sensitive_attributes": sensitive, "private": "eyJzY2hlbWFfdmVyc2lvbiI6IjEifQ==",
        } for j in range(2)],
    }  # fmt: skip


def generate_state(target_bytes: int, seed: int = 1) -> bytes:
    """A Terraform-formatted v4 state of about ``target_bytes``; 1 resource in 50 holds
    secrets."""
    rng = random.Random(seed)
    one = len(json.dumps(_resource(rng, 0, False), indent=2))
    count = max(1, target_bytes // (one + 4))
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": 7,
        "lineage": str(uuid.UUID(int=rng.getrandbits(128))),
        "outputs": {"db_password": {"value": "x" * 12, "type": "string", "sensitive": True}},
        "resources": [_resource(rng, i, i % 50 == 0) for i in range(count)],
        "check_results": None,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _rss_mb() -> float:
    """Peak RSS of this process so far. ``VmHWM`` belongs to the address space exec made;
    ``ru_maxrss`` would carry over the parent's peak (the state generator's) across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _child(path: str) -> None:
    body = Path(path).read_bytes()
    base = _rss_mb()  # interpreter, imports and the state bytes themselves
    t0 = time.perf_counter()
    findings = scan(body)
    scan_s = time.perf_counter() - t0
    scan_peak = _rss_mb()
    t0 = time.perf_counter()
    out = sanitize(body, findings)
    sanitize_s = time.perf_counter() - t0
    result = {
        "scan_s": scan_s,
        "findings": len(findings),
        "base_mb": base,
        "scan_peak_mb": scan_peak,
        "sanitize_s": sanitize_s,
        "sanitize_peak_mb": _rss_mb(),
        "sanitized_bytes": len(out),
    }
    print(json.dumps(result))


def throughput_rows(sizes: list[int]) -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in sizes:
            body = generate_state(mb * 1_000_000)
            path = Path(tmp) / f"state-{mb}.json"
            path.write_bytes(body)
            del body
            r = subprocess.run(
                [sys.executable, __file__, "--child", str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            res = json.loads(r.stdout.strip().splitlines()[-1])
            real_mb = path.stat().st_size / 1e6
            rows.append(
                [
                    f"{real_mb:.1f} MB",
                    f"{res['scan_s']:.2f} s",
                    f"{real_mb / res['scan_s']:.1f}",
                    f"{res['scan_peak_mb']:.0f} MB ({res['base_mb']:.0f})",
                    str(res["findings"]),
                    f"{res['sanitize_s']:.2f} s",
                    f"{res['sanitize_peak_mb']:.0f} MB",
                ]
            )
    return rows


# -- output ----------------------------------------------------------------------------------


def show(title: str, header: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print(f"**{title}**\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()
        return
    table = Table(*header, title=title)
    for row in rows:
        table.add_row(*(cell.replace("**", "") for cell in row))
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100", help="state sizes in MB, comma-separated")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    header = ["kind", "TP", "FP", "FN", "precision", "recall"]
    title = "Catalog + whole states (the rules were tuned on these: in-sample)"
    show(title, header, quality_rows("catalog.jsonl", True), args.markdown)
    title = "Hold-out (written after the rules were frozen; known misses included)"
    show(title, header, quality_rows("holdout.jsonl", False), args.markdown)
    if not args.no_throughput:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        header = [
            "state",
            "scan",
            "MB/s",
            "peak RSS (before scan)",
            "findings",
            "sanitize",
            "peak RSS after sanitize",
        ]
        show("Scan throughput (generated v4 states, one child process each)", header,
             throughput_rows(sizes), args.markdown)  # fmt: skip


if __name__ == "__main__":
    main()
