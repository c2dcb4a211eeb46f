"""The layers of docs/architecture.md, checked on every run so they cannot silently erode.

Every ``import`` of every module under ``src/stateward`` (at any depth, ``TYPE_CHECKING``
blocks included: a type dependency is a dependency) is mapped to the layer of the importing
and of the imported module; each layer may import only the layers listed for it. On top of
that, transports reach the service only through the gate: they import no service module but
the value types, and never call an operation themselves (``gate.ops.writes.write(...)``); they
name it and hand it to a gate session.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "stateward"

#: Layer of a module, by the longest matching prefix of its dotted name.
LAYERS = {
    "stateward": "root",
    "stateward.__main__": "transport",
    "stateward.common": "common",
    "stateward.logs": "common",
    "stateward.metrics": "common",
    "stateward.storage": "storage",
    "stateward.crypto": "barrier",
    "stateward.tofu": "tofu",
    "stateward.domain": "domain",
    "stateward.config": "config",
    "stateward.service": "service",
    "stateward.auth": "auth",
    "stateward.gate": "gate",
    "stateward.jobs": "jobs",
    "stateward.transfer": "transfer",
    "stateward.s3audit": "s3audit",
    "stateward.http": "transport",
    "stateward.cli": "transport",
}

#: What each layer may import (besides itself and third-party packages).
ALLOWED = {
    "root": set(),
    "common": {"root"},
    "storage": {"common"},
    "barrier": {"storage", "common"},
    "tofu": {"common"},
    "domain": {"common"},
    "config": {"domain", "barrier", "storage", "common"},
    "service": {"config", "domain", "barrier", "storage", "tofu", "common", "root"},
    "auth": {"config", "domain", "barrier", "common"},
    "gate": {"service", "auth", "config", "domain", "barrier", "storage", "common"},
    "jobs": {"gate", "service", "config", "domain", "common", "root"},
    "transfer": {"domain", "tofu", "common"},
    #: the S3 backend audit: a read-only client of AWS plus the pure secret scanner
    "s3audit": {"domain", "common", "root"},
    "transport": {
        "gate", "jobs", "transfer", "s3audit", "auth", "service", "config", "domain", "tofu",
        "common", "root",
    },
}  # fmt: skip

#: The only service modules a transport or a job may import: value types and the façade's
#: type (to name operations), and the two store-level workflows that no gate can run because
#: they work on stores that are not open: migrate-store (it spans two stores) and the schema
#: status/upgrade (it runs before a store can be opened).
SERVICE_FACES = {
    "stateward.service.views",
    "stateward.service.core",
    "stateward.service.audit",
    "stateward.service.imports",
    "stateward.service.migrate",
    "stateward.service.schema",
}
#: The gate's own composition root may build what it opens.
GATE_ROOT = {"stateward.gate.build"}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer)
    return None if best is None else best[1]


def is_module(dotted: str) -> bool:
    base = SRC.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                # ``from stateward.service import schema`` imports the module
                # stateward.service.schema; ``from stateward.gate import Gate`` a name
                full = f"{node.module}.{alias.name}"
                yield node.lineno, full if is_module(full) else node.module


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert [m for m in map(module_name, sources()) if layer_of(m) is None] == []


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path) -> None:
    me = module_name(path)
    mine = layer_of(me)
    assert mine is not None
    wrong = []
    for line, target in imports(path):
        if not (target == "stateward" or target.startswith("stateward.")):
            continue
        theirs = layer_of(target)
        if theirs is None or theirs == mine:
            continue
        if theirs not in ALLOWED[mine]:
            wrong.append(f"line {line}: {mine} imports {target} ({theirs})")
        elif theirs == "service" and mine in ("transport", "jobs"):
            if not any(target == f or target.startswith(f + ".") for f in SERVICE_FACES):
                wrong.append(f"line {line}: {mine} reaches into {target}; use the gate")
        elif theirs == "storage" and mine == "gate" and me not in GATE_ROOT:
            wrong.append(f"line {line}: the gate imports {target}")
    assert wrong == []


def _attribute_chain(node: ast.expr) -> list[str]:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


TRANSPORTS = [p for p in sources() if layer_of(module_name(p)) == "transport"]


@pytest.mark.parametrize("path", TRANSPORTS, ids=lambda p: str(p.relative_to(SRC)))
def test_transports_run_operations_only_through_the_gate(path: Path) -> None:
    """``gate.ops.writes.write`` is named and handed to a session; calling it directly would
    skip authentication and the audit record."""
    direct = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            chain = _attribute_chain(node.func)
            if "ops" in chain[:-1]:
                direct.append(f"line {node.lineno}: {'.'.join(chain)}(...)")
    assert direct == []


def test_domain_is_pure() -> None:
    """No I/O in the domain: no sockets, files, subprocesses, databases or HTTP."""
    forbidden = {"socket", "subprocess", "sqlalchemy", "urllib.request", "http.client",
                 "boto3", "botocore", "httpx", "starlette", "fastapi", "threading"}  # fmt: skip
    found = []
    for path in (SRC / "domain").rglob("*.py"):
        for line, target in imports(path):
            if target.split(".")[0] in forbidden or target in forbidden:
                found.append(f"{path.relative_to(SRC)}:{line}: {target}")
    assert found == []


def test_only_storage_speaks_sql() -> None:
    """All SQL lives in storage/: outside it nothing imports SQLAlchemy or the schema (the
    service passes storage's opaque ``Connection`` handles to repositories)."""
    found = []
    for path in sources():
        if layer_of(module_name(path)) == "storage":
            continue
        for line, target in imports(path):
            if target.split(".")[0] in ("sqlalchemy", "alembic") or target.startswith(
                "stateward.storage.schema"
            ):
                found.append(f"{path.relative_to(SRC)}:{line}: {target}")
    assert found == []
