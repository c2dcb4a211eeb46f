"""A tiny HCL writer whose output is already ``terraform fmt`` clean.

Just what the bootstrap module needs: blocks, attributes (aligned ``=`` per run of
consecutive attributes, as ``terraform fmt`` does), comments, and single-line values
(strings escaped for HCL, lists, numbers, booleans, raw expressions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Raw:
    """An expression written as is (``aws_kms_key.state.arn``)."""

    text: str


Value = str | int | bool | Raw | Sequence["Value"]


def quote(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${")
    out = out.replace("%{", "%%{").replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def value(v: Value) -> str:
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return quote(v)
    return "[" + ", ".join(value(x) for x in v) + "]"


@dataclass
class Attr:
    name: str
    value: Value


@dataclass
class Comment:
    text: str


@dataclass
class Block:
    head: str
    items: list[Attr | Block | Comment] = field(default_factory=list)

    def attr(self, name: str, v: Value) -> Block:
        self.items.append(Attr(name, v))
        return self

    def block(self, head: str, *attrs: tuple[str, Value]) -> Block:
        child = Block(head, [Attr(n, v) for n, v in attrs])
        self.items.append(child)
        return child

    def comment(self, text: str) -> Block:
        self.items.append(Comment(text))
        return self

    def render(self, indent: int = 0) -> list[str]:
        pad = "  " * indent
        if not self.items:
            return [f"{pad}{self.head} {{}}"]
        lines = [f"{pad}{self.head} {{"]
        i = 0
        prev_block = False
        while i < len(self.items):
            item = self.items[i]
            if isinstance(item, Attr):
                run = []
                while i < len(self.items) and isinstance(self.items[i], Attr):
                    run.append(self.items[i])
                    i += 1
                width = max(len(a.name) for a in run)  # type: ignore[union-attr]
                if prev_block:
                    lines.append("")
                lines += [f"{pad}  {a.name.ljust(width)} = {value(a.value)}"  # type: ignore
                          for a in run]
                prev_block = False
                continue
            if isinstance(item, Comment):
                lines.append(f"{pad}  # {item.text}" if item.text else "")
            else:
                if i > 0 and not isinstance(self.items[i - 1], Comment):
                    lines.append("")
                lines += item.render(indent + 1)
                prev_block = True
            i += 1
        lines.append(f"{pad}}}")
        return lines


def document(blocks: Sequence[Block | Comment]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Comment):
            out.append(f"# {b.text}" if b.text else "")
            continue
        if out and out[-1] != "" and not out[-1].startswith("#"):
            out.append("")
        out += b.render()
    return "\n".join(out) + "\n"
