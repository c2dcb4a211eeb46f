"""Loading Terraform/OpenTofu files with python-hcl2, and reading its output safely.

python-hcl2 (>= 7) keeps string literals quoted (``'"x"'``) and expressions wrapped
(``'${var.x}'``), which is exactly what the audit needs: a *literal* is a quoted string with no
interpolation, anything else is an expression whose value is unknown here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Files larger than this are not parsed (reported as not checked).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 2000
_SUFFIXES = (".tf", ".tofu")


class MissingExtra(RuntimeError):
    """python-hcl2 is not installed."""


def _hcl2() -> Any:
    try:
        import hcl2
        from hcl2.utils import SerializationOptions
    except ImportError:
        raise MissingExtra(
            "the code audit needs python-hcl2: pip install 'stateward[s3-audit]'"
        ) from None
    return hcl2, SerializationOptions(with_comments=False, explicit_blocks=True)


@dataclass
class HclFile:
    path: str
    text: str
    doc: dict[str, Any]

    def line_of(self, *words: str) -> int:
        """1-based line of the first line holding ``words`` in order (a block header such as
        ``resource "aws_s3_bucket" "state"``); 1 when not found."""
        pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
        for i, line in enumerate(self.text.splitlines(), 1):
            if pattern.search(line):
                return i
        return 1


@dataclass
class Loaded:
    files: list[HclFile] = field(default_factory=list)
    #: (relative path, reason) of files not parsed.
    failed: list[tuple[str, str]] = field(default_factory=list)


def load_dir(root: Path) -> Loaded:
    hcl2, options = _hcl2()
    out = Loaded()
    paths = sorted(
        p for p in root.rglob("*")
        if p.suffix in _SUFFIXES and ".terraform" not in p.parts and p.is_file()
        and not p.is_symlink()
    )
    for path in paths[:MAX_FILES]:
        rel = path.relative_to(root).as_posix()
        if path.stat().st_size > MAX_FILE_BYTES:
            out.failed.append((rel, f"larger than {MAX_FILE_BYTES} bytes"))
            continue
        try:
            text = path.read_text(encoding="utf-8")
            doc = hcl2.loads(text, serialization_options=options)
        except UnicodeDecodeError:
            out.failed.append((rel, "not UTF-8"))
            continue
        except Exception as exc:  # the parser raises lark's many exception types
            out.failed.append((rel, f"HCL syntax error ({type(exc).__name__})"))
            continue
        out.files.append(HclFile(rel, text, doc))
    if len(paths) > MAX_FILES:
        out.failed.append((f"{len(paths) - MAX_FILES} more files", "over the file limit"))
    return out


def label(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def literal(value: Any) -> str | None:
    """The string of a literal (``"x"``), None for expressions and non-strings."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return None if "${" in inner else inner
    return None


def truthy(value: Any) -> bool:
    return value is True or value == "true" or literal(value) == "true"


def blocks(body: Any, name: str) -> list[dict[str, Any]]:
    """The nested blocks ``name`` of a block body (always a list)."""
    got = body.get(name, []) if isinstance(body, dict) else []
    items = got if isinstance(got, list) else [got]
    return [b for b in items if isinstance(b, dict)]


def labelled(body: Any, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``name "label" { … }`` blocks: (label, body)."""
    for item in blocks(body, name):
        for key, inner in item.items():
            if isinstance(inner, dict):
                yield label(key), inner


def resources(f: HclFile, kind: str = "resource") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every ``resource``/``data`` block of a file."""
    for item in f.doc.get(kind, []) or []:
        for rtype, named in item.items():
            if not isinstance(named, dict):
                continue
            for name, body in named.items():
                if isinstance(body, dict):
                    yield label(rtype), label(name), body
