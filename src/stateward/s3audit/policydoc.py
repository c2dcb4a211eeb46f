"""IAM policy documents as data: parsing, normalizing, and matching (pure, no I/O).

Shared by the bucket policy, KMS key policy and IAM role checks. Parsing refuses what it does
not understand (:class:`PolicyError`) instead of guessing, so a malformed document is a finding,
never a crash and never a pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

_EFFECTS = ("Allow", "Deny")
_ACCOUNT = re.compile(r"^\d{12}$")
_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):")
MAX_POLICY_BYTES = 1024 * 1024


class PolicyError(ValueError):
    """The document cannot be evaluated (one line, no document content)."""


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    effect: str
    #: Principal as given, normalized to ``{type: [values]}``; ``{"*": ["*"]}`` for ``"*"``;
    #: None for identity policies (no Principal element).
    principals: dict[str, tuple[str, ...]] | None
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    condition: dict[str, dict[str, tuple[str, ...]]]

    def matches_action(self, action: str) -> bool:
        hit = any(glob_match(p, action, ignore_case=True) for p in self.actions)
        return hit != self.not_action

    def matches_resource(self, resource: str) -> bool:
        if not self.resources:  # trust/key policies may omit Resource
            return True
        hit = any(glob_match(p, resource) for p in self.resources)
        return hit != self.not_resource

    def aws_principals(self) -> tuple[str, ...]:
        if self.principals is None:
            return ()
        if "*" in self.principals:
            return ("*",)
        return self.principals.get("AWS", ())


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{what} is neither a string nor a list of strings")


def _principals(value: Any) -> dict[str, tuple[str, ...]]:
    if value == "*":
        return {"*": ("*",)}
    if not isinstance(value, dict) or not value:
        raise PolicyError("Principal is neither \"*\" nor an object of principal types")
    return {str(k): _strings(v, f"Principal.{k}") for k, v in value.items()}


def _condition(value: Any) -> dict[str, dict[str, tuple[str, ...]]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError("Condition is not an object")
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for op, body in value.items():
        if not isinstance(body, dict):
            raise PolicyError(f"Condition operator {op} has no key/value object")
        out[str(op)] = {
            str(k).lower(): tuple(str(x).lower() if isinstance(x, bool) else str(x)
                                  for x in (v if isinstance(v, list) else [v]))
            for k, v in body.items()
        }
    return out


def _statement(raw: Any, index: int) -> Statement:
    if not isinstance(raw, dict):
        raise PolicyError(f"statement {index} is not an object")
    effect = raw.get("Effect")
    if effect not in _EFFECTS:
        raise PolicyError(f"statement {index} has Effect {str(effect)[:20]!r}")
    if ("Action" in raw) == ("NotAction" in raw):
        raise PolicyError(f"statement {index} needs exactly one of Action / NotAction")
    if "Resource" in raw and "NotResource" in raw:
        raise PolicyError(f"statement {index} has both Resource and NotResource")
    principal_key = "NotPrincipal" if "NotPrincipal" in raw else "Principal"
    principals = _principals(raw[principal_key]) if principal_key in raw else None
    act_key = "NotAction" if "NotAction" in raw else "Action"
    res_key = "NotResource" if "NotResource" in raw else "Resource"
    return Statement(
        sid=str(raw.get("Sid", ""))[:128],
        effect=effect,
        principals=principals,
        not_principal=principal_key == "NotPrincipal",
        actions=_strings(raw[act_key], act_key),
        not_action=act_key == "NotAction",
        resources=_strings(raw[res_key], res_key) if res_key in raw else (),
        not_resource=res_key == "NotResource",
        condition=_condition(raw.get("Condition")),
    )


def parse(document: str | dict[str, Any]) -> list[Statement]:
    """The statements of a policy given as JSON text (URL-encoded, as IAM returns it, is
    accepted too) or as an already-decoded object."""
    if isinstance(document, str):
        if len(document) > MAX_POLICY_BYTES:
            raise PolicyError("policy document larger than 1 MiB")
        text = document.strip()
        if text.startswith("%7B") or text.startswith("%7b"):
            text = unquote(text)
        try:
            document = json.loads(text)
        except ValueError:
            raise PolicyError("policy document is not JSON") from None
    if not isinstance(document, dict):
        raise PolicyError("policy document is not a JSON object")
    raw = document.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise PolicyError("policy document has no Statement")
    return [_statement(s, i) for i, s in enumerate(raw)]


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run, ? one character; policy variables ${…} may stand for
    # anything (callers decide whether that is conservative)
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "$" and pattern.startswith("${", i) and "}" in pattern[i:]:
            i = pattern.index("}", i) + 1
            out.append(".*")
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def account_of(principal: str) -> str | None:
    """The account of an AWS principal (ARN or bare account id); None for ``*``/unknown."""
    if _ACCOUNT.match(principal):
        return principal
    m = _ARN_ACCOUNT.match(principal)
    return m.group(1) if m else None


def condition_values(st: Statement, op_prefix: str, key: str) -> tuple[str, ...] | None:
    """Values of ``key`` under any operator starting with ``op_prefix`` (None: absent)."""
    for op, body in st.condition.items():
        if op.startswith(op_prefix) and key.lower() in body:
            return body[key.lower()]
    return None
