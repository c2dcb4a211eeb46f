"""The labelled secret catalog (README.md here): its entries and the states they stand for.

One loader for the tests (tests/test_secretscan.py) and the benchmark
(benchmarks/bench_secretscan.py), so both judge the scanner on the same states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).parent
STATES = CATALOG / "states"


def load_entries(name: str = "catalog.jsonl") -> list[dict[str, Any]]:
    lines = (CATALOG / name).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def state_bytes(outputs: dict[str, Any], resources: list[dict[str, Any]], serial: int = 1) -> bytes:
    doc = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": serial,
        "lineage": "00000000-0000-4000-8000-000000000000",
        "outputs": outputs,
        "resources": resources,
        "check_results": None,
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def entry_state(entry: dict[str, Any]) -> bytes:
    """The one-resource (or one-output) state a catalog entry stands for (see the README)."""
    outputs: dict[str, Any] = {}
    resources: list[dict[str, Any]] = []
    if "output" in entry:
        out = dict(entry["output"])
        outputs[out.pop("name")] = out
    else:
        attrs = entry["attribute"] if "attribute" in entry else {"v": entry["value"]}
        resources.append({
            "mode": "managed",
            "type": entry.get("resource_type", "example_thing"),
            "name": "this",
            "provider": 'provider["registry.terraform.io/example/example"]',
            "instances": [{
                "schema_version": 0,
                "attributes": attrs,
                "sensitive_attributes": entry.get("sensitive_attributes", []),
            }],
        })  # fmt: skip
    return state_bytes(outputs, resources)


def entry_location(entry: dict[str, Any]) -> str | None:
    """Where a positive entry's finding must be (None: anywhere, for a lone value)."""
    if "output" in entry:
        return "outputs." + str(entry["output"]["name"])
    target = entry.get("target")
    if target is None:
        attrs = entry.get("attribute", {"v": None})
        if len(attrs) != 1:
            return None
        target = next(iter(attrs))
    rtype = entry.get("resource_type", "example_thing")
    return f"resources[{rtype}.this].instances[0].attributes.{target}"
