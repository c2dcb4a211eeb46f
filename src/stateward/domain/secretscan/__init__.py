"""Secret detection in Terraform/OpenTofu states (pure: no I/O besides the bytes given).

``scan(state)`` lists where a state holds secrets; ``sanitize(state, findings)`` returns the
same state with those values replaced by ``"REDACTED(<kind>)"``, to share with support.
A finding names a location, a kind and a rule, never the value nor any part, length or hash
of it. (Map keys and ``for_each`` keys are names and do appear in locations.)

Sources, from the most authoritative:

- Terraform's own marks: outputs with ``"sensitive": true`` and the instance paths listed in
  ``sensitive_attributes`` (cty paths, ``[[{"type": "get_attr", "value": "password"}]]``; a
  flat list of steps and dotted strings are accepted too). Dynamically-typed attributes
  (``terraform_data.input``) are stored as ``{"value": …, "type": …}``: the marks apply to the
  value, and ``terraform_data.output``, which mirrors ``input`` unmarked, is marked with it.
- Credentials recognisable by shape anywhere in a string (also inside base64 that decodes
  to text): PEM private keys, GCP service-account JSON, AWS access key IDs and secret keys,
  Azure storage keys and SAS signatures, GitHub/GitLab/Slack/Stripe/npm/Vault/Terraform
  Cloud/SendGrid/stateward tokens, Google API keys, JWTs, passwords in URLs
  (``scheme://user:pass@host``) and in ADO connection strings.
- ``key=value`` text whose key means a secret (``DB_PASSWORD=…`` in a script, ``"password":
  "…"`` in a JSON string, ``?token=…``).
- Attribute, map-key and ``{name, value}``-pair names that mean a secret (``password``,
  ``client_secret``, ``private_key_pem``, ``api_key`` …) but not those that describe one
  (``password_length``, ``token_ttl``, ``secret_arn``, ``kms_key_id``, ``public_key``,
  ``password_policy``); plus per-type attributes (``random_password.result``,
  ``kubernetes_secret.data``, ``aws_ssm_parameter.value`` when ``SecureString`` …). Only
  non-empty strings that are not references/placeholders (``${…}``, ``arn:…``, ``<password>``,
  ``****``) count.
- Whole strings that look random: Shannon entropy over the hex/base64/password alphabets,
  above the 0.5th percentile of random strings of the same length, with upper+lower+digit
  required, and excluding UUIDs, cloud resource IDs (``i-0abc…``, ``sg-…``, ``ami-…``), AWS
  unique IDs (``AROA…``), word-like identifiers, base64 of text, attributes named as ids,
  hashes, versions, etags, certificates or public keys, and ID-generating resource types.
  Random text inside longer strings is not flagged (certificates and policies would be).

Precedence (one finding per location; the earliest kind in ``KINDS`` wins): a named
credential format says most about what leaked and what to rotate, so the vendor kinds come
first, then the generic ``jwt`` and ``connection-string-password``; then Terraform's certain
``sensitive-attribute``/``sensitive-output`` (they say nothing of the format); then the
guesses, most telling first: ``secret-assignment``, ``secret-name``, ``high-entropy``.
``gcp-service-account-key`` ranks above ``pem-private-key`` because the JSON holds a PEM key.

Client-encrypted OpenTofu states (``encryption_version``) have nothing scannable: no
findings, and ``scan_report`` says so. Other JSON is scanned generically (and
``terraform show -json`` output's ``sensitive_values`` honoured); non-JSON yields nothing.

Inside a value Terraform marks sensitive (a block, a map), only the credential kinds are
reported on top of the mark. Not scanned: an instance's ``private`` (opaque provider data) and
``dependencies``, and map keys.

Size: the state's resources are decoded one at a time from the raw bytes, strings longer than
``MAX_TEXT_SCAN`` are pattern-scanned on their first 1 MiB only, entropy is judged only on
strings up to ``MAX_ENTROPY_LEN`` (4 KiB) and base64 decoded up to 64 KiB.
"""

from __future__ import annotations

from stateward.domain.secretscan._detect import (
    CREDENTIAL_KINDS,
    HEURISTIC_KINDS,
    KINDS,
    MAX_ENTROPY_LEN,
    MAX_TEXT_SCAN,
    TERRAFORM_KINDS,
    is_marker,
    marker,
)
from stateward.domain.secretscan._sanitize import sanitize
from stateward.domain.secretscan._scan import Finding, ScanReport, scan_report

__all__ = [
    "CREDENTIAL_KINDS",
    "HEURISTIC_KINDS",
    "KINDS",
    "MAX_ENTROPY_LEN",
    "MAX_TEXT_SCAN",
    "TERRAFORM_KINDS",
    "Finding",
    "ScanReport",
    "is_marker",
    "marker",
    "sanitize",
    "sanitize_fully",
    "scan",
    "scan_report",
]


def scan(state: bytes) -> list[Finding]:
    """Where ``state`` (a Terraform/OpenTofu state body) holds secrets, in document order."""
    return list(scan_report(state).findings)


def sanitize_fully(state: bytes, rounds: int = 5) -> bytes:
    """Sanitize until a rescan finds nothing more to redact (at most ``rounds`` passes).

    One pass can expose a new finding: redacting a credential inside an object can change how
    a sibling value is judged (a name rule that yielded to the credential now applies). A copy
    meant for sharing must be stable, so the sanitized download repeats until it is."""
    out = state
    for _ in range(rounds):
        nxt = sanitize(out, scan(out))
        if nxt == out:
            return out
        out = nxt
    return out
