"""KMS economy: AWS KMS calls per 1,000 state writes, with and without data-key reuse.

Runs the real service in-process with the ``aws-kms`` key provider against moto's KMS in server
mode (real HTTP on loopback; no AWS). The workload is a team's steady write load: 1,000 writes
spread round-robin over ``--paths`` state paths (default 20). The baseline is one data key per
write (``data_key_max_uses = 1``), which is what a naive envelope scheme (or S3 SSE-KMS without
a Bucket Key) costs. Target (issue 4): >= 90 % fewer KMS calls than the baseline.

    python benchmarks/bench_kms.py [--writes 1000] [--paths 20] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from rich.console import Console
from rich.table import Table

from stateward.config import EncryptionRule, Settings
from stateward.crypto.providers.aws_kms import AwsKmsConfig, AwsKmsProvider
from stateward.domain.principal import Principal
from stateward.service.factory import build_service

ADMIN = Principal("bench", roles=("admin",), source="127.0.0.1")
REGION = "us-east-1"


def state(serial: int, lineage: str) -> bytes:
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": serial,
        "lineage": lineage,
        "outputs": {"n": {"value": serial, "type": "number"}},
        "resources": [],
        "check_results": None,
    }
    return json.dumps(doc).encode()


def run(endpoint: str, key_arn: str, writes: int, paths: int, max_uses: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "d",
            key_providers={"kms": AwsKmsConfig(key_id=key_arn, endpoint_url=endpoint)},
            encryption=[EncryptionRule(paths=["**"], provider="kms")],
            data_key_max_uses=max_uses,
        )
        svc = build_service(settings)
        provider = svc.barrier.keys.providers["kms"]
        assert isinstance(provider, AwsKmsProvider)
        lineages = [str(uuid.uuid4()) for _ in range(paths)]
        latencies = []
        t0 = time.perf_counter()
        for i in range(writes):
            p = i % paths
            start = time.perf_counter()
            svc.writes.write(ADMIN, f"team/app{p}/prod", state(i // paths + 1, lineages[p]))
            latencies.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - t0
        calls = provider.call_counts()
        svc.engine.dispose()
    return {
        "calls": sum(calls.values()),
        "by_op": calls,
        "p50_ms": statistics.median(latencies) * 1000,
        "wps": writes / elapsed,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--paths", type=int, default=20)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    for var, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[var] = value
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
        arn = kms.create_key(Description="bench")["KeyMetadata"]["Arn"]
        naive = run(endpoint, arn, args.writes, args.paths, max_uses=1)
        reuse = run(endpoint, arn, args.writes, args.paths, max_uses=1000)
    finally:
        server.stop()
    per_1000 = 1000 / args.writes
    saved = 1 - reuse["calls"] / naive["calls"]
    rows = [
        ("KMS calls per 1,000 writes", f"{naive['calls'] * per_1000:,.0f}",
         f"{reuse['calls'] * per_1000:,.0f}", f"{saved:.1%} fewer", "≥ 90% fewer",
         "yes" if saved >= 0.9 else "NO"),
        ("write p50 (ms)", f"{naive['p50_ms']:.2f}", f"{reuse['p50_ms']:.2f}", "", "(info)", ""),
        ("writes/s (1 client)", f"{naive['wps']:,.0f}", f"{reuse['wps']:,.0f}", "", "(info)", ""),
    ]  # fmt: skip
    title = (
        f"KMS economy: {args.writes} writes over {args.paths} paths, aws-kms via moto server "
        f"(Python {sys.version.split()[0]})"
    )
    if args.markdown:
        print(f"**{title}**\n")
        print("| metric | one data key per write | data-key reuse | saving | target | met? |")
        print("|---|---:|---:|---:|---|:---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print(f"\ncalls by operation: naive {naive['by_op']}, reuse {reuse['by_op']}")
        return
    table = Table("metric", "one data key per write", "data-key reuse", "saving", "target", "met?",
                  title=title)  # fmt: skip
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"calls by operation: naive {naive['by_op']}, reuse {reuse['by_op']}")


if __name__ == "__main__":
    main()
