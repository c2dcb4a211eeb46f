"""String-level detectors: credential patterns, secret-meaning names, entropy (pure, no I/O).

Everything here looks at one string (and, for names, one attribute name) at a time; walking a
state document and deciding locations is ``_scan``'s job. Nothing here returns a value or a
part of one: matches are spans, which only the sanitizer uses, on the document it was given.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

# -- kinds ----------------------------------------------------------------------------------

#: Every kind, most specific first: when several rules fire on one location, the earliest kind
#: in this tuple is the one reported (see the package docstring for the reasoning).
KINDS: Final[tuple[str, ...]] = (
    "gcp-service-account-key",
    "pem-private-key",
    "aws-access-key",
    "aws-secret-key",
    "azure-storage-key",
    "azure-sas-token",
    "github-token",
    "gitlab-token",
    "slack-token",
    "slack-webhook",
    "stripe-key",
    "google-api-key",
    "npm-token",
    "vault-token",
    "terraform-cloud-token",
    "sendgrid-key",
    "stateward-token",
    "jwt",
    "connection-string-password",
    "sensitive-attribute",
    "sensitive-output",
    "secret-assignment",
    "secret-name",
    "high-entropy",
)
RANK: Final[dict[str, int]] = {k: i for i, k in enumerate(KINDS)}

#: Kinds that recognise a credential by its own shape, wherever it is.
CREDENTIAL_KINDS: Final[frozenset[str]] = frozenset(KINDS[: KINDS.index("sensitive-attribute")])
#: Kinds that come from Terraform's own marking (``sensitive``), whatever the value looks like.
TERRAFORM_KINDS: Final[frozenset[str]] = frozenset({"sensitive-attribute", "sensitive-output"})
#: Kinds that are educated guesses (a name, ``key=value`` text, randomness).
HEURISTIC_KINDS: Final[frozenset[str]] = frozenset(
    {"secret-assignment", "secret-name", "high-entropy"}
)

#: Pattern scanning looks at this many characters of a string at most.
MAX_TEXT_SCAN: Final = 1 << 20
#: A longer string is a blob (a file, an archive), not one secret: no entropy verdict on it.
MAX_ENTROPY_LEN: Final = 4096
#: Base64 strings are decoded (this many characters at most) to look for credentials inside.
MAX_BASE64_DECODE: Final = 64 * 1024

_MARKER_RE: Final = re.compile(r"REDACTED\([a-z0-9-]{1,40}\)")


def marker(kind: str) -> str:
    """What the sanitizer writes in place of a secret."""
    return f"REDACTED({kind})"


def is_marker(value: str) -> bool:
    return value.startswith("REDACTED(") and _MARKER_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Match:
    """A credential found inside a string: ``[start, end)`` is what the sanitizer replaces."""

    kind: str
    rule: str
    start: int
    end: int


# -- placeholders ---------------------------------------------------------------------------

_PLACEHOLDER_WORDS: Final = frozenset(
    {
        "password", "passwd", "pass", "pwd", "secret", "token", "apikey", "api_key", "key",
        "null", "nil", "none", "undefined", "true", "false", "yes", "no", "on", "off",
        "redacted", "sensitive", "(sensitive)", "(sensitive value)", "<sensitive>", "masked",
        "placeholder", "example", "dummy", "changeme_placeholder", "your-password",
        "your_password", "yourpassword", "your-token", "your_token", "your-api-key",
        "your_api_key", "todo", "tbd", "n/a", "na", "unset", "empty", "hidden", "****",
    }
)  # fmt: skip
_PLACEHOLDER_PREFIXES: Final = (
    "${", "$(", "{{", "<", "%s", "%(", "#{", "@{", "var.", "local.", "data.", "module.",
    "env.", "secrets.",
    "process.env", "os.environ", "arn:", "projects/", "vault:", "ssm:", "sm:", "kms:",
    "awskms:", "secretsmanager:", "@microsoft.keyvault", "ref+", "op://", "!vault", "!secret",
    "keyvault:", "gcp-secret:", "file:", "/run/secrets/", "/var/run/secrets/", "valuefrom",
)  # fmt: skip
_ENV_REF: Final = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*|%[A-Za-z_][A-Za-z0-9_]*%")
_MASK_CHARS: Final = frozenset("*xX•#.-_ ?")


def is_placeholder(value: str) -> bool:
    """A reference, template, mask or stock word standing where a secret would be."""
    v = value.strip().strip("\"'`").strip()
    if not v or "REDACTED(" in v:
        return True
    lower = v.lower()
    if lower in _PLACEHOLDER_WORDS or lower.startswith(_PLACEHOLDER_PREFIXES):
        return True
    if _ENV_REF.fullmatch(v):  # $DB_PASSWORD, %DB_PASSWORD%
        return True
    return set(v) <= _MASK_CHARS


# -- attribute names ------------------------------------------------------------------------

_SECRET_WORDS: Final = frozenset(
    {
        "password", "passwords", "passwd", "passphrase", "pwd", "secret", "secrets", "token",
        "tokens", "credential", "credentials", "creds", "apikey", "apikeys", "privatekey",
        "secretkey", "accesskey", "psk", "connectionstring", "plaintext", "sas",
    }
)  # fmt: skip
#: Words that mean a secret only as a name's last word (``db_pass``, docker's ``auth``).
_LAST_ONLY_WORDS: Final = frozenset({"pass", "pw", "auth"})
#: Compound words (``dbpassword``, ``clientsecret``, ``authtoken``).
_SECRET_SUFFIXES: Final = ("password", "passwd", "passphrase", "secret", "token", "apikey")
_SECRET_PAIRS: Final = frozenset(
    {
        ("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
        ("account", "key"), ("master", "key"), ("signing", "key"), ("encryption", "key"),
        ("shared", "key"), ("app", "key"), ("application", "key"), ("storage", "key"),
        ("subscription", "key"), ("connection", "string"), ("key", "material"),
        ("client", "key"), ("hmac", "key"), ("primary", "connection"),
        ("secondary", "connection"), ("service", "password"), ("admin", "key"),
        ("auth", "key"), ("license", "key"),
    }
)  # fmt: skip
#: Anywhere in a name, these say the value is not the secret itself.
_NEG_ANYWHERE: Final = frozenset(
    {
        "encrypted", "encrypt", "ciphertext", "hashed", "hash", "public", "pub", "kms", "min",
        "max", "minimum", "maximum", "length", "len", "policy", "policies", "fingerprint",
        "sha", "sha1", "sha256", "sha512", "md5", "checksum", "digest", "etag", "salt",
        "rotation", "rotate", "rotated", "expiry", "expiration", "expires", "expire", "ttl",
        "strength", "complexity", "history", "reuse", "lowercase", "uppercase", "symbols",
        "numbers", "numeric", "special", "chars", "characters", "wo",
    }
)  # fmt: skip
#: As a name's last word, these say the value describes a secret rather than holds it.
_NEG_LAST: Final = frozenset(
    {
        "id", "ids", "arn", "arns", "name", "names", "type", "types", "version", "versions",
        "format", "algorithm", "alg", "path", "paths", "file", "files", "filename", "location",
        "url", "uri", "urls", "endpoint", "endpoints", "host", "hostname", "prefix", "suffix",
        "count", "size", "bits", "curve", "source", "ref", "reference", "role", "duration",
        "lifetime", "period", "mode", "status", "state", "label", "labels", "description",
        "tags", "tag", "hint", "regex", "pattern", "field", "fields", "required", "enabled",
        "disabled", "enable", "set", "exists", "present", "used", "usage", "date", "time",
        "timestamp", "at", "seconds", "minutes", "hours", "days", "ms", "secs", "mins",
        "stages", "stage", "schedule", "rules", "rule", "metadata", "issuer", "audience",
        "scope", "scopes", "claim", "claims", "header", "kid", "config", "configuration",
        "settings", "group", "groups", "owner", "provider", "store", "manager", "backend",
        "engine", "mount", "namespace", "selector", "class", "kind", "permissions",
        "permission", "request", "requests", "limit", "limits", "retention", "recovery",
        "window", "strategy", "handler", "template", "encryption", "age", "validity", "method",
        "methods", "mechanism", "protocol", "level", "policy", "option", "options", "auth",
        "authentication", "length", "key",
    }
)  # fmt: skip
_CAMEL_1: Final = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2: Final = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NON_ALNUM: Final = re.compile(r"[^A-Za-z0-9]+")


def name_tokens(name: str) -> tuple[str, ...]:
    """``dbPassword`` / ``DB_PASSWORD`` / ``db-password`` → ``("db", "password")``."""
    s = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name))
    return tuple(t for t in _NON_ALNUM.split(s.lower()) if t)


@lru_cache(maxsize=8192)
def secret_name(name: str) -> bool:
    """Does an attribute (or map key, or env var) of this name hold a secret as its value?"""
    tokens = name_tokens(name)
    if not tokens or len(tokens) > 12:
        return False
    if any(t in _NEG_ANYWHERE for t in tokens):
        return False
    last = tokens[-1]
    hit = False
    for i, t in enumerate(tokens):
        if t in _SECRET_WORDS or t.endswith(_SECRET_SUFFIXES):
            hit = True
        if i + 1 < len(tokens) and (t, tokens[i + 1]) in _SECRET_PAIRS:
            hit = True
            if i + 2 == len(tokens):  # the pair ends the name: ``secret_key``, ``api_key``
                return True
    if last in _LAST_ONLY_WORDS:
        return True
    if not hit:
        return False
    return last not in _NEG_LAST or (last in _SECRET_WORDS and len(tokens) == 1)


_ENTROPY_NEG_TOKENS: Final = frozenset(
    {
        "id", "ids", "arn", "arns", "uuid", "guid", "uid", "version", "versions", "etag",
        "hash", "hashes", "sha", "sha1", "sha256", "sha512", "md5", "checksum", "digest",
        "fingerprint", "thumbprint", "public", "pub", "cert", "certificate", "ca", "csr",
        "nonce", "salt", "signature", "ciphertext", "encrypted", "content", "user", "data",
        "revision", "commit", "image", "ami", "hex", "b64", "base64", "std", "url", "hmac",
        "name", "names", "etags", "serial", "number", "zone", "key", "keys", "tag", "tags",
        "ref", "reference", "private",
    }
)  # fmt: skip
_ENTROPY_NEG_ANYWHERE: Final = frozenset(
    {"encrypted", "ciphertext", "cipher", "wrapped", "public", "pub", "certificate", "cert"}
)
_ENTROPY_NEG_SUBSTR: Final = ("hash", "sha", "md5", "checksum", "digest", "fingerprint", "etag")


@lru_cache(maxsize=8192)
def entropy_exempt_name(name: str) -> bool:
    """Names whose values are random by nature but not secret (ids, hashes, public keys)."""
    lower = name.lower()
    if any(s in lower for s in _ENTROPY_NEG_SUBSTR):
        return True
    tokens = name_tokens(name)
    if not tokens or secret_name(name):
        return False
    if any(t in _ENTROPY_NEG_ANYWHERE for t in tokens):
        return True
    return tokens[-1] in _ENTROPY_NEG_TOKENS or tokens[0] == "user"


# -- resource types -------------------------------------------------------------------------

#: (resource type) → top-level attributes that hold a secret whatever their name says.
TYPE_SECRET_ATTRS: Final[dict[str, frozenset[str]]] = {
    "random_password": frozenset({"result", "bcrypt_hash"}),
    "kubernetes_secret": frozenset({"data", "binary_data"}),
    "kubernetes_secret_v1": frozenset({"data", "binary_data"}),
    "vault_generic_secret": frozenset({"data", "data_json"}),
    "vault_kv_secret_v2": frozenset({"data", "data_json"}),
    "vault_kv_secret": frozenset({"data", "data_json"}),
    "azurerm_key_vault_secret": frozenset({"value"}),
    "azuread_application_password": frozenset({"value"}),
    "azuread_service_principal_password": frozenset({"value"}),
    "local_sensitive_file": frozenset({"content", "content_base64", "sensitive_content"}),
    "helm_release": frozenset({"set_sensitive"}),
    "aws_ssm_parameter": frozenset({"value"}),  # only when type = SecureString, see below
    "tfe_variable": frozenset({"value"}),  # only when sensitive = true
    "github_actions_secret": frozenset({"plaintext_value"}),
}
#: Types whose random-looking values are identifiers or public material, never secrets.
ENTROPY_EXEMPT_TYPES: Final = frozenset(
    {
        "random_id", "random_uuid", "random_pet", "random_integer", "random_shuffle",
        "time_static", "time_rotating", "time_offset", "archive_file", "tls_cert_request",
        "tls_self_signed_cert", "tls_locally_signed_cert", "tls_public_key",
        "aws_kms_ciphertext", "github_actions_public_key", "aws_key_pair",
        "github_actions_organization_public_key", "github_dependabot_public_key",
    }
)  # fmt: skip


def type_secret_attr(rtype: str, top_attr: str, attributes: dict[str, Any]) -> bool:
    attrs = TYPE_SECRET_ATTRS.get(rtype)
    if attrs is None or top_attr not in attrs:
        return False
    if rtype == "aws_ssm_parameter":
        return attributes.get("type") == "SecureString"
    if rtype == "tfe_variable":
        return attributes.get("sensitive") is True
    return True


# -- credential patterns --------------------------------------------------------------------

_PATTERN: Final = re.compile(
    r"(?P<pem>-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)"
    r"|(?P<gcp>\\?\"type\\?\"\s*:\s*\\?\"service_account\\?\")"
    r"|(?P<akid>(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9]))"
    r"|(?P<awssec>(?i:(?:aws_?)?secret_?access_?key|aws_?secret_?key)[\"']?\s*[:=]\s*[\"']?"
    r"(?P<awssec_v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+]))"
    r"|(?P<azkey>AccountKey=(?P<azkey_v>[A-Za-z0-9+/]{86}==))"
    r"|(?P<sas>[?&]sig=(?P<sas_v>[A-Za-z0-9%+/=]{30,200}))"
    r"|(?P<gh>(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9]))"
    r"|(?P<ghpat>(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{60,255})"
    r"|(?P<gl>(?<![A-Za-z0-9_-])(?:glpat|gldt|glrt|glptt|glcbt|glft|glsoat|gloas)-"
    r"[A-Za-z0-9_-]{20,})"
    r"|(?P<slack>(?<![A-Za-z0-9])xox[baprs]-[0-9A-Za-z][0-9A-Za-z-]{9,})"
    r"|(?P<slackhook>https://hooks\.slack\.com/(?:services|workflows|triggers)/"
    r"[A-Za-z0-9_/+-]{20,})"
    r"|(?P<stripe>(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,})"
    r"|(?P<gapi>(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-]))"
    r"|(?P<npm>(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9]))"
    r"|(?P<vault>(?<![A-Za-z0-9_.])hv[sbr]\.[A-Za-z0-9_-]{24,})"
    r"|(?P<tfc>(?<=[A-Za-z0-9]{14})\.atlasv1\.[A-Za-z0-9_-]{60,})"
    r"|(?P<sendgrid>(?<![A-Za-z0-9])SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})"
    r"|(?P<swt>(?<![A-Za-z0-9_])swt_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-]))"
    r"|(?P<jwt>(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*)"
)
#: Apart from ``_PATTERN``: a URL's password may itself be a token (``x-access-token:ghs_…@``),
#: and one ``finditer`` never returns overlapping matches.
_URL_USERINFO: Final = re.compile(
    r"://(?P<url_user>[^\s:/?#@'\"]{0,256}):(?P<url_pw>[^\s/?#@'\"]{1,256})@[^\s/?#'\"@]+"
)
#: Case-sensitive literals, one of which every ``_PATTERN`` match contains (``awssec`` aside,
#: see ``_has_anchor``): a pure literal alternation is what ``re`` searches fastest.
_ANCHOR_WORDS: Final = (
    "-----BEGIN", "service_account", "AKIA", "ASIA", "ABIA", "ACCA", "AccountKey=", "sig=",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glrt-", "glptt-",
    "glcbt-", "glft-", "glsoat-", "gloas-", "xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-",
    "hooks.slack.com", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "AIza", "npm_", "hvs.",
    "hvb.", "hvr.", ".atlasv1.", "SG.", "swt_", "eyJ",
)  # fmt: skip
_ANCHOR: Final = re.compile("|".join(re.escape(w) for w in _ANCHOR_WORDS))
_ANCHOR_BYTES: Final = re.compile("|".join(re.escape(w) for w in _ANCHOR_WORDS).encode())


_AWSSEC_HINT: Final = re.compile(r"secret_?access|aws_?secret")  # on lower-cased text
#: Lower-case words one of which a key meaning a secret contains (see ``secret_name``).
_KEYWORDS: Final = r"pass|pwd|secret|token|cred|key|auth|plaintext|sas|psk|pw|connection"
_KEYWORD: Final = re.compile(_KEYWORDS)
_KEYWORD_BYTES: Final = re.compile(_KEYWORDS.encode())


def _has_anchor(text: str, lower: str) -> bool:
    return _ANCHOR.search(text) is not None or _AWSSEC_HINT.search(lower) is not None


def _lowered(text: str) -> tuple[str, bool]:
    """``text.lower()``, and whether its indices still match ``text``'s (a few Unicode
    characters lower-case to two). Case-insensitive regexes are ~10x slower in ``re``."""
    lower = text.lower()
    return lower, len(lower) == len(text)


def raw_may_hold_credentials(raw: bytes | memoryview) -> bool:
    """Could any string in this raw JSON contain a credential pattern or a ``key=value``?

    A fast path for a whole resource at once (JSON escapes aside: Terraform escapes only
    ``<``, ``>`` and ``&``, which no anchor contains)."""
    if _ANCHOR_BYTES.search(raw) is not None:
        return True
    lower = bytes(raw).lower()
    return b"://" in lower or _KEYWORD_BYTES.search(lower) is not None


#: group → (kind, rule, group whose span is redacted)
_GROUPS: Final[dict[str, tuple[str, str, str]]] = {
    "pem": ("pem-private-key", "pem-block", "pem"),
    "gcp": ("gcp-service-account-key", "gcp-sa-json", "gcp"),
    "akid": ("aws-access-key", "aws-akid", "akid"),
    "awssec": ("aws-secret-key", "aws-secret-assign", "awssec_v"),
    "azkey": ("azure-storage-key", "azure-account-key", "azkey_v"),
    "sas": ("azure-sas-token", "azure-sas-sig", "sas_v"),
    "gh": ("github-token", "github-classic", "gh"),
    "ghpat": ("github-token", "github-fine-grained", "ghpat"),
    "gl": ("gitlab-token", "gitlab-token", "gl"),
    "slack": ("slack-token", "slack-token", "slack"),
    "slackhook": ("slack-webhook", "slack-webhook", "slackhook"),
    "stripe": ("stripe-key", "stripe-secret", "stripe"),
    "gapi": ("google-api-key", "google-api-key", "gapi"),
    "npm": ("npm-token", "npm-token", "npm"),
    "vault": ("vault-token", "vault-token", "vault"),
    "tfc": ("terraform-cloud-token", "tfc-token", "tfc"),
    "sendgrid": ("sendgrid-key", "sendgrid-key", "sendgrid"),
    "swt": ("stateward-token", "stateward-token", "swt"),
    "jwt": ("jwt", "jwt", "jwt"),
}

#: ``key = value`` / ``"key": "value"`` / ``?key=value`` where the key means a secret.
#: The ``key = value`` starting at a key found around a ``_KEYWORD`` hit.
_ASSIGN_AT: Final = re.compile(
    r"(?P<key>[A-Za-z_][\w.-]{0,63})[\"']?[ \t]*(?P<sep>:=|=>|=|:)[ \t]*"
    r"(?:\"(?P<dq>[^\"\\\n]{1,512})\"|'(?P<sq>[^'\n]{1,512})'"
    r"|(?P<bare>[^\s\"',;&<>{}()\[\]]{3,512}))"
)
_KEY_HEAD: Final = re.compile(r"[\w.-]{0,63}\Z")
_NOT_BEFORE_KEY: Final = frozenset(".:/\\-_")
_ADO_SERVER: Final = re.compile(r"(?i)(?:^|;)\s*(?:server|host|data source|address|addr)\s*=")
_B64_BODY: Final = re.compile(r"[A-Za-z0-9+/=]{16}")


def find_credentials(text: str) -> list[Match]:
    """Credentials recognisable by their own shape in ``text`` (first MAX_TEXT_SCAN chars)."""
    if len(text) > MAX_TEXT_SCAN:
        text = text[:MAX_TEXT_SCAN]
    out: list[Match] = []
    lower, aligned = _lowered(text)
    if not aligned:  # rare: fall back to the slow case-insensitive searches
        lower = _fold_ascii(text)
    for m in _PATTERN.finditer(text) if _has_anchor(text, lower) else ():
        group = m.lastgroup
        if group is None or group not in _GROUPS:
            continue
        kind, rule, span_group = _GROUPS[group]
        start, end = m.span(span_group)
        if group == "pem":
            span = _pem_span(text, start, end)
            if span is None:
                continue
            start, end = span
        elif group == "gcp":
            if "private_key" not in text:
                continue
            start, end = 0, len(text)
        elif group == "jwt":
            if not _jwt_header_ok(m.group("jwt")):
                continue
        elif group == "sas":
            if "sv=" not in text:
                continue
        elif group == "tfc":
            start -= 14
        out.append(Match(kind, rule, start, end))
    if "://" in text:
        for m in _URL_USERINFO.finditer(text):
            start, end = m.span("url_pw")
            if not is_placeholder(m.group("url_pw")):
                out.append(Match("connection-string-password", "url-userinfo", start, end))
    if _KEYWORD.search(lower) is not None:
        out.extend(_assignments(text, lower, out))
    return out


def _pem_span(text: str, start: int, header_end: int) -> tuple[int, int] | None:
    end_at = text.find("-----END", header_end)
    body = text[header_end : end_at if end_at >= 0 else header_end + 4096]
    if not _B64_BODY.search(body.replace("\\n", "\n")):
        return None  # a header with no key after it (documentation, a template)
    if end_at < 0:
        return start, len(text)
    close = text.find("-----", end_at + 8)
    return start, (close + 5 if close >= 0 else len(text))


def _jwt_header_ok(token: str) -> bool:
    head = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
        doc = json.loads(raw)
    except (ValueError, binascii.Error):
        return False
    return isinstance(doc, dict) and ("alg" in doc or "typ" in doc)


def _assignments(text: str, lower: str, found: list[Match]) -> list[Match]:
    """Keyword-driven: each secret-ish word found (on ``lower``) is widened to its whole key,
    which must start a word and be followed by ``=``/``:``/``:=``/``=>`` and a value."""
    out: list[Match] = []
    done = -1
    for km in _KEYWORD.finditer(lower):
        if km.start() < done:
            continue  # another keyword of a key already handled (``api_key_token``)
        head = _KEY_HEAD.search(text, max(0, km.start() - 63), km.start())
        ks = head.start() if head is not None else km.start()
        before = ks - 1
        if before >= 0 and text[before] in "\"'":
            before -= 1
        if before >= 0 and (text[before].isalnum() or text[before] in _NOT_BEFORE_KEY):
            continue  # inside a word, an ARN (``…:secret:name``) or a path
        m = _ASSIGN_AT.match(text, ks)
        if m is None:
            continue
        done = m.end("key")
        key = m.group("key")
        if not secret_name(key):
            continue
        group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
        start, end = m.span(group)
        value = text[start:end]
        if is_placeholder(value) or any(f.start < end and start < f.end for f in found):
            continue  # overlapping a more specific match (``aws_secret_access_key = …``)
        if group == "bare" and m.group("sep") == ":" and value.isalpha() and value.islower():
            continue  # ``password: must …`` is prose; a YAML password has more than letters
        if key.lower() in ("password", "pwd") and ";" in text and _ADO_SERVER.search(text):
            out.append(Match("connection-string-password", "ado-password", start, end))
        else:
            out.append(Match("secret-assignment", "kv-assign", start, end))
    return out


def _fold_ascii(text: str) -> str:
    """Lower-case ASCII letters only: same length as ``text`` whatever it holds."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


# -- base64 content -------------------------------------------------------------------------

_STD_B64: Final = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")


def decode_base64_text(value: str) -> str | None:
    """The text a base64 string encodes, if it is standard base64 of mostly printable UTF-8."""
    v = value.strip()
    if len(v) < 24 or len(v) % 4 or not _STD_B64.fullmatch(v[:MAX_BASE64_DECODE]):
        return None
    chunk = v[:MAX_BASE64_DECODE]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        raw = base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="ignore")
        if len(text) < len(raw) * 0.9:
            return None
    printable = sum(1 for c in text if c.isprintable() or c in "\t\r\n")
    return text if printable >= 0.95 * len(text) else None


# -- entropy --------------------------------------------------------------------------------

_HEX: Final = re.compile(r"[0-9a-f]{32,}|[0-9A-F]{32,}")
_B64ISH: Final = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")
_PWISH: Final = re.compile(r"[!-~]{16,128}")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_RESOURCE_ID: Final = re.compile(r"[a-z][a-z0-9]{0,24}-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_AWS_UNIQUE_ID: Final = re.compile(r"(?:AROA|AIDA|ANPA|AGPA|AIPA|ANVA|ASCA|APKA|ASIA)[A-Z0-9]{13,}")
#: Public tokens (Stripe publishable keys) and labelled digests (SRI ``sha512-…``, OCI
#: ``sha256:…``).
_NOT_SECRET_PREFIXES: Final = (
    "pk_live_", "pk_test_", "sha1-", "sha256-", "sha384-", "sha512-", "sha256:", "sha512:",
)  # fmt: skip
#: A regular expression, not a password (``^[A-Za-z0-9!@#]{12,}$``).
_REGEX_SHAPE: Final = re.compile(r"^\^|\$$|\]\{|\]\+|\\[dwsDWS]|\(\?")
_WORDY: Final = re.compile(r"[a-z]{3,}|[A-Z]{4,}")
_SPECIALS: Final = frozenset("!#$%&*+=?@^~|<>()[]{};,'\"`\\")
#: (length, minimum Shannon entropy in bits/char): about the 0.5th percentile of random strings
#: of that length over base64's alphabet (measured), so a random token passes 99.5 % of the time.
_B64_FLOOR: Final = ((16, 3.35), (20, 3.55), (24, 3.8), (32, 4.15), (40, 4.4), (48, 4.6),
                     (64, 4.9), (88, 5.1), (128, 5.3), (256, 5.6))  # fmt: skip
_HEX_FLOOR: Final = ((32, 3.2), (40, 3.35), (64, 3.6), (128, 3.8), (256, 3.9))


def _floor(table: tuple[tuple[int, float], ...], n: int) -> float:
    if n <= table[0][0]:
        return table[0][1]
    for (n0, h0), (n1, h1) in itertools.pairwise(table):
        if n <= n1:
            return h0 + (h1 - h0) * (n - n0) / (n1 - n0)
    return table[-1][1]


def shannon(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def wordy(value: str) -> bool:
    """Mostly made of words (``MyApplicationLoadBalancer01``): names, not random tokens."""
    covered = sum(len(w) for w in _WORDY.findall(value))
    return covered >= 0.4 * len(value)


def high_entropy_rule(value: str) -> str | None:
    """The entropy rule a whole string trips (``entropy-hex``/``-base64``/``-password``)."""
    v = value.strip()
    n = len(v)
    if n < 16 or n > MAX_ENTROPY_LEN:
        return None
    if _HEX.fullmatch(v):
        has_digit = any(c.isdigit() for c in v)
        has_alpha = any(c.isalpha() for c in v)
        if has_digit and has_alpha and shannon(v) >= _floor(_HEX_FLOOR, n):
            return "entropy-hex"
        return None
    if v.startswith(_NOT_SECRET_PREFIXES):
        return None
    if n >= 20 and _B64ISH.fullmatch(v):
        if _UUID.search(v) or _RESOURCE_ID.fullmatch(v) or _AWS_UNIQUE_ID.fullmatch(v):
            return None
        if not (_has_upper(v) and _has_lower(v) and _has_digit(v)) or wordy(v):
            return None
        if decode_base64_text(v) is not None:
            return None  # encoded text (a config, a certificate): the text is judged instead
        if shannon(v) >= _floor(_B64_FLOOR, n):
            return "entropy-base64"
        return None
    if n <= 128 and _PWISH.fullmatch(v):
        if "://" in v or v.startswith(("arn:", "${", "{{", "/")) or ("@" in v[1:-1] and "." in v):
            return None
        if not (_has_upper(v) and _has_lower(v) and _has_digit(v)):
            return None
        if not any(c in _SPECIALS for c in v) or wordy(v) or _REGEX_SHAPE.search(v):
            return None
        if shannon(v) >= _floor(_B64_FLOOR, n):
            return "entropy-password"
    return None


def _has_upper(v: str) -> bool:
    return any("A" <= c <= "Z" for c in v)


def _has_lower(v: str) -> bool:
    return any("a" <= c <= "z" for c in v)


def _has_digit(v: str) -> bool:
    return any("0" <= c <= "9" for c in v)


# -- specific shapes for named values -------------------------------------------------------

_AWS_SECRET_SHAPE: Final = re.compile(r"[A-Za-z0-9/+]{40}")
_AWS_AKID_SHAPE: Final = re.compile(r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}")
_AZURE_KEY_SHAPE: Final = re.compile(r"[A-Za-z0-9+/]{86}==")


def aws_secret_shaped(value: str) -> bool:
    return (
        _AWS_SECRET_SHAPE.fullmatch(value) is not None
        and _has_upper(value)
        and _has_lower(value)
        and shannon(value) >= 4.0
    )


def aws_akid_shaped(value: str) -> bool:
    return _AWS_AKID_SHAPE.fullmatch(value) is not None


def azure_key_shaped(value: str) -> bool:
    return _AZURE_KEY_SHAPE.fullmatch(value) is not None


def redact_text(text: str, fallback_kind: str) -> str:
    """``text`` with each credential found in it replaced by its marker; the whole text by
    ``fallback_kind``'s marker if nothing is found (the finding came from elsewhere)."""
    matches = find_credentials(text)
    if not matches:
        return marker(fallback_kind)
    # keep the most specific of overlapping matches, then splice right to left
    chosen: list[Match] = []
    for m in sorted(matches, key=lambda m: (RANK[m.kind], m.start)):
        if all(m.end <= c.start or c.end <= m.start for c in chosen):
            chosen.append(m)
    out = text
    for m in sorted(chosen, key=lambda m: m.start, reverse=True):
        out = out[: m.start] + marker(m.kind) + out[m.end :]
    if len(text) > MAX_TEXT_SCAN:
        # past the scanned prefix nothing is known: do not hand it out
        out = out[: MAX_TEXT_SCAN + len(out) - len(text)] + marker(fallback_kind)
    return out
