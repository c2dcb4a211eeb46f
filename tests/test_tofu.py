"""OpenTofu client-side encryption interop (stateward.tofu and ``stateward tofu``).

Ground truth is tests/vectors/tofu (see its README): files
written by OpenTofu's own encryption code plus deterministic samples. Every file there is
exercised; a file added without a row in VECTORS fails ``test_every_vector_file_is_covered``.

External services: aws_kms runs against moto in server mode (a real HTTP endpoint boto3 talks
to); openbao runs against FakeTransit below, which implements exactly the two transit endpoints
OpenTofu calls. Neither is a real AWS KMS / OpenBao.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stateward.tofu import (
    ConfigError,
    DecryptionError,
    FormatError,
    KeyProviderError,
    TargetEncryption,
    TofuError,
    build_target,
    gojson,
    inspect_payload,
    load_config,
    parse_config,
)
from stateward.tofu import envelope as env_mod
from stateward.tofu.methods import AesGcm, Unencrypted
from stateward.tofu.providers.pbkdf2 import Pbkdf2Params, Pbkdf2Provider, derive
from stateward.tofu.rand import Scripted
from stateward.tofu.secret import Secret
from tests.harness.support import free_port

VECTORS = Path(
    os.environ.get("STATEWARD_TOFU_VECTORS", Path(__file__).parent / "vectors" / "tofu")
)
PASSPHRASE = "correct-horse-battery-staple"


def seq(n: int, start: int) -> bytes:
    """The README's ``seq(n, s)``: the bytes s, s+1, …, s+n-1."""
    return bytes(range(start, start + n))


def vec(name: str) -> bytes:
    path = VECTORS / name
    if not path.exists():
        raise RuntimeError(f"OpenTofu test vector missing: {path} (set STATEWARD_TOFU_VECTORS)")
    return path.read_bytes()


PBKDF2_MAIN = {"key_provider": {"pbkdf2": {"main": {"passphrase": PASSPHRASE}}}}
AES_M = {"aes_gcm": {"m": {"keys": "key_provider.pbkdf2.main"}}}

#: The README's configurations, as stateward descriptions (dicts; TOML/JSON tested separately).
CONFIGS: dict[str, dict[str, Any]] = {
    "pbkdf2": {**PBKDF2_MAIN, "method": AES_M, "state": {"method": "method.aes_gcm.m"}},
    "pbkdf2_plan": {**PBKDF2_MAIN, "method": AES_M, "plan": {"method": "method.aes_gcm.m"}},
    "migrate": {
        **PBKDF2_MAIN,
        "method": {**AES_M, "unencrypted": {"migrate": {}}},
        "state": {
            "method": "method.aes_gcm.m",
            "fallback": {"method": "method.unencrypted.migrate"},
        },
        "plan": {"method": "method.aes_gcm.m", "fallback": ["method.unencrypted.migrate"]},
    },
    "rawkey": {
        "method": {
            "aes_gcm": {
                "m": {
                    "keys": {
                        "encryption_key": list(seq(32, 0x01)),
                        "decryption_key": list(seq(32, 0x01)),
                    }
                }
            }
        },
        "state": {"method": "method.aes_gcm.m"},
    },
}


@dataclass(frozen=True)
class Vector:
    config: str
    kind: env_mod.Kind
    plaintext: str
    method: str
    migration: bool


VECTORS_TABLE: dict[str, Vector] = {
    "state_pbkdf2_aesgcm_deterministic.tfstate": Vector(
        "pbkdf2", "state", "plaintext.tfstate", "method.aes_gcm.m", False
    ),
    "state_pbkdf2_aesgcm_random.tfstate": Vector(
        "pbkdf2", "state", "plaintext.tfstate", "method.aes_gcm.m", False
    ),
    "state_rawkey_aesgcm_deterministic.tfstate": Vector(
        "rawkey", "state", "plaintext.tfstate", "method.aes_gcm.m", False
    ),
    "plan_pbkdf2_aesgcm_deterministic.tfplan": Vector(
        "pbkdf2_plan", "plan", "plaintext_plan.zip", "method.aes_gcm.m", False
    ),
    "real_state_pbkdf2_default.tfstate": Vector(
        "pbkdf2", "state", "plaintext.tfstate", "method.aes_gcm.m", False
    ),
    "real_plan_pbkdf2_default.tfplan": Vector(
        "pbkdf2_plan", "plan", "plaintext_plan.zip", "method.aes_gcm.m", False
    ),
    "real_state_migrate_from_unencrypted.tfstate": Vector(
        "migrate", "state", "plaintext.tfstate", "method.aes_gcm.m", False
    ),
    "real_state_pbkdf2_default_statefile_writeindent.tfstate": Vector(
        "pbkdf2",
        "state",
        "real_state_pbkdf2_default_statefile_writeindent.plaintext.tfstate",
        "method.aes_gcm.m",
        False,
    ),
    # Plaintexts read through a chain with an unencrypted fallback: "migration".
    "plaintext.tfstate": Vector(
        "migrate", "state", "plaintext.tfstate", "method.unencrypted.migrate", True
    ),
    "plaintext_plan.zip": Vector(
        "migrate", "plan", "plaintext_plan.zip", "method.unencrypted.migrate", True
    ),
    "real_state_pbkdf2_default_statefile_writeindent.plaintext.tfstate": Vector(
        "migrate",
        "state",
        "real_state_pbkdf2_default_statefile_writeindent.plaintext.tfstate",
        "method.unencrypted.migrate",
        True,
    ),
}
#: Files with their own dedicated tests.
SPECIAL = {"README.md", "fake_encrypted_must_reject.tfstate", "pbkdf2_example_decrypt_test.json"}


@pytest.fixture(scope="module")
def targets() -> dict[tuple[str, str], TargetEncryption]:
    """Built once per module: pbkdf2 providers cache derivations (0.2 s each at 600k)."""
    built: dict[tuple[str, str], TargetEncryption] = {}
    for name, cfg in CONFIGS.items():
        config = parse_config(cfg)
        for kind in ("state", "plan"):
            if config.target(kind) is not None:
                built[(name, kind)] = build_target(config, kind)
    return built


def target_for(targets: dict[tuple[str, str], TargetEncryption], v: Vector) -> TargetEncryption:
    return targets[(v.config, v.kind)]


# --------------------------------------------------------------------------- vectors


def test_every_vector_file_is_covered() -> None:
    present = {p.name for p in VECTORS.iterdir()}
    assert present, f"no vectors in {VECTORS}"
    assert present == set(VECTORS_TABLE) | SPECIAL


@pytest.mark.parametrize("name", sorted(VECTORS_TABLE))
def test_vector_decrypts_to_its_plaintext(
    name: str, targets: dict[tuple[str, str], TargetEncryption]
) -> None:
    v = VECTORS_TABLE[name]
    result = target_for(targets, v).decrypt(vec(name))
    assert result.plaintext == vec(v.plaintext)
    assert result.method == v.method
    assert result.migration is v.migration
    assert result.was_encrypted is (name != v.plaintext)


def test_writeindent_plaintext_keeps_go_escapes(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    """OpenTofu's state writer escapes <>&; decryption returns those bytes untouched."""
    result = targets[("pbkdf2", "state")].decrypt(
        vec("real_state_pbkdf2_default_statefile_writeindent.tfstate")
    )
    assert b"\\u003cworld\\u003e \\u0026 friends" in result.plaintext


def test_pbkdf2_deterministic_key_matches_readme() -> None:
    key = derive(PASSPHRASE.encode(), seq(32, 0x00), 600_000, "sha512", 32)
    assert key.hex() == "1f37997eb21dbbc6f8292988091f48c845c90fc2c61dc7d69ace904cfeb382f2"


def test_pbkdf2_example_decrypt_derivation() -> None:
    """OpenTofu's Example_decrypt, via the provider's *decryption* path: the stored metadata
    wins over the configured parameters (configured here: 200000 iterations, sha256)."""
    ex = json.loads(vec("pbkdf2_example_decrypt_test.json"))
    salt = bytes.fromhex(ex["salt_hex"])
    expected = bytes.fromhex(ex["expected_decryption_key_hex"])
    assert (
        derive(
            ex["passphrase"].encode(), salt, ex["iterations"], ex["hash_function"], ex["key_length"]
        )
        == expected
    )
    provider = Pbkdf2Provider(
        "main",
        Secret(ex["passphrase"].encode()),
        Pbkdf2Params(iterations=200_000, hash_function="sha256"),
    )
    metadata = json.dumps(
        {
            "salt": base64.b64encode(salt).decode(),
            "iterations": ex["iterations"],
            "hash_function": ex["hash_function"],
            "key_length": ex["key_length"],
        }
    ).encode()
    assert provider.decryption_key(metadata) == expected


@pytest.mark.parametrize(
    ("name", "config", "kind", "plaintext", "chunks"),
    [
        (
            "state_pbkdf2_aesgcm_deterministic.tfstate",
            "pbkdf2",
            "state",
            "plaintext.tfstate",
            [seq(32, 0x00), seq(12, 0xA0)],
        ),
        (
            "plan_pbkdf2_aesgcm_deterministic.tfplan",
            "pbkdf2_plan",
            "plan",
            "plaintext_plan.zip",
            [seq(32, 0x70), seq(12, 0x10)],
        ),
        (
            "state_rawkey_aesgcm_deterministic.tfstate",
            "rawkey",
            "state",
            "plaintext.tfstate",
            [seq(12, 0xE0)],
        ),
    ],
)
def test_deterministic_samples_reproduced_byte_for_byte(
    name: str,
    config: str,
    kind: str,
    plaintext: str,
    chunks: list[bytes],
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    rng = Scripted(chunks)
    out = targets[(config, kind)].encrypt(vec(plaintext), rng)
    assert out == vec(name)
    assert rng.remaining == 0  # salt then nonce, exactly as OpenTofu draws them


def test_fake_encrypted_is_refused_even_with_unencrypted_fallback(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    for key in (("pbkdf2", "state"), ("migrate", "state")):
        with pytest.raises(FormatError) as info:
            targets[key].decrypt(vec("fake_encrypted_must_reject.tfstate"))
        msg = str(info.value)
        assert "invalid encrypted payload" in msg
        assert "key_provider.pbkdf2.main" in msg and "not a base64 string" in msg
        assert "\n" not in msg
    with pytest.raises(FormatError):
        inspect_payload(vec("fake_encrypted_must_reject.tfstate"), "state")


# --------------------------------------------------------------------------- failures


def test_plaintext_without_unencrypted_method_is_refused(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    with pytest.raises(DecryptionError, match="no unencrypted method"):
        targets[("pbkdf2", "state")].decrypt(vec("plaintext.tfstate"))
    with pytest.raises(DecryptionError, match="no unencrypted method"):
        targets[("pbkdf2_plan", "plan")].decrypt(vec("plaintext_plan.zip"))


def test_unencrypted_primary_reads_plaintext_without_migration() -> None:
    config = parse_config(
        {
            **CONFIGS["migrate"],
            "state": {"method": "method.unencrypted.migrate", "fallback": ["method.aes_gcm.m"]},
        }
    )
    target = build_target(config, "state")
    result = target.decrypt(vec("plaintext.tfstate"))
    assert (result.migration, result.method) == (False, "method.unencrypted.migrate")
    assert target.encrypt(vec("plaintext.tfstate")) == vec("plaintext.tfstate")  # rollback


def test_not_a_state_or_plan_is_refused(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    migrate = targets[("migrate", "state")]
    for junk in (b"", b"not json", b"[1,2]", b'{"serial": 1}', b'{"terraform_version": ""}'):
        with pytest.raises(FormatError, match="neither an OpenTofu-encrypted state"):
            migrate.decrypt(junk)
    with pytest.raises(FormatError, match="zip starting with 'PK'"):
        targets[("migrate", "plan")].decrypt(b"{}")


def test_unsupported_encryption_version(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    payload = vec("state_rawkey_aesgcm_deterministic.tfstate").replace(b'"v0"', b'"v1"')
    with pytest.raises(FormatError, match="unsupported encryption_version"):
        targets[("rawkey", "state")].decrypt(payload)


def test_wrong_passphrase_fails_clearly() -> None:
    config = parse_config(
        {
            **CONFIGS["pbkdf2"],
            "key_provider": {"pbkdf2": {"main": {"passphrase": "wrong-passphrase-but-long"}}},
        }
    )
    with pytest.raises(DecryptionError) as info:
        build_target(config, "state").decrypt(vec("state_pbkdf2_aesgcm_deterministic.tfstate"))
    msg = str(info.value)
    assert "method.aes_gcm.m" in msg and "authentication failed" in msg
    assert "wrong-passphrase" not in msg and PASSPHRASE not in msg and "\n" not in msg


def _edit(payload: bytes, **changes: Any) -> bytes:
    doc = json.loads(payload)
    doc.update(changes)
    return json.dumps(doc).encode()


def test_tampered_ciphertext_fails(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    payload = vec("state_rawkey_aesgcm_deterministic.tfstate")
    data = bytearray(base64.b64decode(json.loads(payload)["encrypted_data"]))
    data[40] ^= 0x01
    tampered = _edit(payload, encrypted_data=base64.b64encode(bytes(data)).decode())
    with pytest.raises(DecryptionError, match="authentication failed"):
        targets[("rawkey", "state")].decrypt(tampered)
    short = _edit(payload, encrypted_data=base64.b64encode(b"x" * 10).decode())
    with pytest.raises(DecryptionError, match="too short"):
        targets[("rawkey", "state")].decrypt(short)
    with pytest.raises(FormatError, match="not valid base64"):
        targets[("rawkey", "state")].decrypt(_edit(payload, encrypted_data="%%%"))


def test_clear_serial_or_lineage_mismatch_fails(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    payload = vec("state_rawkey_aesgcm_deterministic.tfstate")
    rawkey = targets[("rawkey", "state")]
    with pytest.raises(DecryptionError, match=r"clear serial \(4\) differs .*\(3\)"):
        rawkey.decrypt(_edit(payload, serial=4))
    with pytest.raises(DecryptionError, match=r"clear serial \(None\)"):
        rawkey.decrypt(_edit(payload, serial=None))
    with pytest.raises(DecryptionError, match="clear lineage differs"):
        rawkey.decrypt(_edit(payload, lineage="00000000-0000-0000-0000-000000000000"))
    with pytest.raises(FormatError, match="'serial' is a string"):
        rawkey.decrypt(_edit(payload, serial="3"))
    # Envelopes written without a clear header (nothing to compare) still decrypt.
    doc = json.loads(payload)
    del doc["serial"], doc["lineage"]
    assert rawkey.decrypt(json.dumps(doc).encode()).plaintext == vec("plaintext.tfstate")


def test_readers_ignore_meta_they_do_not_need(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    """OpenTofu 1.7-1.9 stored the metadata of every declared provider."""
    payload = vec("state_pbkdf2_aesgcm_deterministic.tfstate")
    doc = json.loads(payload)
    doc["meta"]["key_provider.aws_kms.unused"] = base64.b64encode(b'{"ciphertext_blob":"AA=="}')
    doc["meta"]["key_provider.pbkdf2.zzz"] = base64.b64encode(b"not even json")
    doc = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in doc.items()}
    doc["meta"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in doc["meta"].items()}
    result = targets[("pbkdf2", "state")].decrypt(json.dumps(doc).encode())
    assert result.plaintext == vec("plaintext.tfstate")


def test_rotation_reports_the_fallback_used() -> None:
    """New raw key as primary, the sample's raw key as fallback: a migration."""
    new_key = list(seq(32, 0x40))
    config = parse_config(
        {
            "method": {
                "aes_gcm": {
                    "new": {"keys": {"encryption_key": new_key, "decryption_key": new_key}},
                    "old": {"keys": {"decryption_key": list(seq(32, 0x01))}},
                }
            },
            "state": {"method": "method.aes_gcm.new", "fallback": ["method.aes_gcm.old"]},
        }
    )
    target = build_target(config, "state")
    result = target.decrypt(vec("state_rawkey_aesgcm_deterministic.tfstate"))
    assert (result.method, result.migration) == ("method.aes_gcm.old", True)
    rewritten = target.encrypt(result.plaintext)
    again = target.decrypt(rewritten)
    assert (again.method, again.migration) == ("method.aes_gcm.new", False)
    # A method with only a decryption key can read but not write.
    only_old = parse_config(
        {
            "method": {"aes_gcm": {"old": {"keys": {"decryption_key": list(seq(32, 0x01))}}}},
            "state": {"method": "method.aes_gcm.old"},
        }
    )
    with pytest.raises(KeyProviderError, match="no encryption_key"):
        build_target(only_old, "state").encrypt(vec("plaintext.tfstate"))


def test_all_methods_failing_lists_each(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    with pytest.raises(DecryptionError) as info:
        targets[("migrate", "state")].decrypt(vec("state_rawkey_aesgcm_deterministic.tfstate"))
    msg = str(info.value)
    assert msg.startswith("cannot decrypt the state with any configured method: ")
    assert "method.aes_gcm.m: no metadata for key_provider.pbkdf2.main" in msg


def test_encrypted_metadata_alias(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    """A renamed provider keeps reading old files through its alias, and writes the alias."""
    config = parse_config(
        {
            "key_provider": {
                "pbkdf2": {
                    "renamed": {
                        "passphrase": PASSPHRASE,
                        "encrypted_metadata_alias": "key_provider.pbkdf2.main",
                    }
                }
            },
            "method": {"aes_gcm": {"m": {"keys": "key_provider.pbkdf2.renamed"}}},
            "state": {"method": "method.aes_gcm.m"},
        }
    )
    target = build_target(config, "state")
    assert target.decrypt(vec("real_state_pbkdf2_default.tfstate")).plaintext == vec(
        "plaintext.tfstate"
    )
    out = target.encrypt(vec("plaintext.tfstate"), Scripted([seq(32, 0x00), seq(12, 0xA0)]))
    assert out == vec("state_pbkdf2_aesgcm_deterministic.tfstate")
    alias_cfg = parse_config(
        {
            **CONFIGS["pbkdf2"],
            "key_provider": {
                "pbkdf2": {
                    "main": {"passphrase": PASSPHRASE, "encrypted_metadata_alias": "team-key"}
                }
            },
        }
    )
    aliased = build_target(alias_cfg, "state").encrypt(vec("plaintext.tfstate"))
    assert list(json.loads(aliased)["meta"]) == ["team-key"]
    report = inspect_payload(aliased, "state", alias_cfg)
    assert [(m.key, m.provider_type, m.source) for m in report.meta] == [
        ("team-key", "pbkdf2", "config alias")
    ]
    assert inspect_payload(aliased, "state").meta[0].source == "guessed"


def test_encrypt_refuses_wrong_input(targets: dict[tuple[str, str], TargetEncryption]) -> None:
    state = targets[("pbkdf2", "state")]
    with pytest.raises(FormatError, match="already an encrypted state"):
        state.encrypt(vec("real_state_pbkdf2_default.tfstate"))
    with pytest.raises(FormatError, match="not a plaintext state"):
        state.encrypt(b'{"serial": 1}')
    with pytest.raises(FormatError, match="not a plaintext plan"):
        targets[("pbkdf2_plan", "plan")].encrypt(b"{}")
    with pytest.raises(FormatError, match="'serial' is a string"):
        state.encrypt(b'{"terraform_version": "1.9.0", "serial": "1"}')


def test_aad_must_match() -> None:
    def cfg(aad: Any) -> dict[str, Any]:
        keys = {"encryption_key": list(seq(32, 1)), "decryption_key": list(seq(32, 1))}
        return {
            "method": {"aes_gcm": {"m": {"keys": keys, "aad": aad}}},
            "state": {"method": "method.aes_gcm.m"},
        }

    with_aad = build_target(parse_config(cfg([1, 2, 3])), "state")
    payload = with_aad.encrypt(vec("plaintext.tfstate"))
    assert with_aad.decrypt(payload).plaintext == vec("plaintext.tfstate")
    for other in ([1, 2, 4], "abc"):
        with pytest.raises(DecryptionError, match="authentication failed"):
            build_target(parse_config(cfg(other)), "state").decrypt(payload)
    text = build_target(parse_config(cfg("abc")), "state")
    assert text.decrypt(text.encrypt(vec("plaintext.tfstate"))).plaintext == vec(
        "plaintext.tfstate"
    )


def test_pbkdf2_sha256_and_custom_lengths_round_trip() -> None:
    config = parse_config(
        {
            "key_provider": {
                "pbkdf2": {
                    "k": {
                        "passphrase": PASSPHRASE,
                        "iterations": 200_000,
                        "hash_function": "sha256",
                        "salt_length": 16,
                        "key_length": 16,
                    }
                }
            },
            "method": {"aes_gcm": {"m": {"keys": "key_provider.pbkdf2.k"}}},
            "state": {"method": "method.aes_gcm.m"},
        }
    )
    target = build_target(config, "state")
    payload = target.encrypt(vec("plaintext.tfstate"))
    meta = json.loads(base64.b64decode(json.loads(payload)["meta"]["key_provider.pbkdf2.k"]))
    assert list(meta) == ["salt", "iterations", "hash_function", "key_length"]
    assert (meta["iterations"], meta["hash_function"], meta["key_length"]) == (200000, "sha256", 16)
    assert len(base64.b64decode(meta["salt"])) == 16
    assert target.decrypt(payload).plaintext == vec("plaintext.tfstate")


def test_hostile_pbkdf2_metadata_is_refused_before_deriving(
    targets: dict[tuple[str, str], TargetEncryption],
) -> None:
    payload = vec("state_pbkdf2_aesgcm_deterministic.tfstate")

    def meta(salt: str = "AA==", iterations: Any = 600000, hash_function: str = "sha512") -> bytes:
        return json.dumps(
            {
                "salt": salt,
                "iterations": iterations,
                "hash_function": hash_function,
                "key_length": 32,
            }
        ).encode()

    cases = {
        meta(iterations=2_000_000_000): "unreasonable derivation cost",
        meta(hash_function="md5"): "unknown hash function",
        meta(salt=""): "incomplete",
        meta(iterations="many"): "not a non-negative integer",
        b"[]": "not a JSON object",
    }
    for metadata, reason in cases.items():
        doc = json.loads(payload)
        doc["meta"]["key_provider.pbkdf2.main"] = base64.b64encode(metadata).decode()
        with pytest.raises(DecryptionError, match=reason):
            targets[("pbkdf2", "state")].decrypt(json.dumps(doc).encode())


# --------------------------------------------------------------------------- configuration


def test_toml_and_json_descriptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOFU_PASSPHRASE", PASSPHRASE)
    toml = tmp_path / "enc.toml"
    toml.write_text(
        """
[key_providers.pbkdf2.main]
passphrase_env = "TOFU_PASSPHRASE"
[methods.aes_gcm.m]
keys = "key_provider.pbkdf2.main"
[methods.unencrypted.migrate]
[state]
method = "method.aes_gcm.m"
fallback = ["method.unencrypted.migrate"]
"""
    )
    # OpenTofu's own JSON form (as in TF_ENCRYPTION), with ${} references and nested fallback.
    js = tmp_path / "enc.json"
    js.write_text(
        json.dumps(
            {
                "encryption": {
                    "key_provider": {"pbkdf2": {"main": {"passphrase_file": "pass.txt"}}},
                    "method": {
                        "aes_gcm": {"m": {"keys": "${key_provider.pbkdf2.main}"}},
                        "unencrypted": {"migrate": {}},
                    },
                    "state": {
                        "method": "${method.aes_gcm.m}",
                        "fallback": {"method": "${method.unencrypted.migrate}"},
                    },
                }
            }
        )
    )
    (tmp_path / "pass.txt").write_text(PASSPHRASE + "\n")  # relative to the config's directory
    for path in (toml, js):
        config = load_config(path)
        assert config.state is not None
        assert [str(r) for r in config.state.chain] == [
            "method.aes_gcm.m",
            "method.unencrypted.migrate",
        ]
        target = build_target(config, "state")
        result = target.decrypt(vec("real_state_migrate_from_unencrypted.tfstate"))
        assert result.plaintext == vec("plaintext.tfstate")
        assert target.decrypt(vec("plaintext.tfstate")).migration


def test_secrets_never_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(CONFIGS["pbkdf2"])
    assert PASSPHRASE not in repr(config)
    target = build_target(config, "state")
    assert PASSPHRASE not in repr(target.chain[0].__dict__)
    raw = parse_config(CONFIGS["rawkey"])
    assert "1, 2, 3" not in repr(raw)
    monkeypatch.setenv("SHORT_PASS", "tiny-pw")
    short = parse_config(
        {
            **CONFIGS["pbkdf2"],
            "key_provider": {"pbkdf2": {"main": {"passphrase_env": "SHORT_PASS"}}},
        }
    )
    with pytest.raises(ConfigError) as info:
        build_target(short, "state")
    assert "too short" in str(info.value) and "tiny-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"key_provider": {"pbkdf2": {"k": {"passphrase": PASSPHRASE, "pasphrase": "x"}}}},
            "unknown setting 'pasphrase'",
        ),
        (
            {"key_provider": {"pbkdf2": {"k": {"passphrase": PASSPHRASE, "iterations": 1000}}}},
            "dangerously low",
        ),
        (
            {"key_provider": {"pbkdf2": {"k": {"passphrase": PASSPHRASE, "hash_function": "md5"}}}},
            "hash_function must be one of",
        ),
        ({"key_provider": {"pbkdf2": {"k": {}}}}, "one of passphrase, passphrase_env"),
        (
            {"key_provider": {"pbkdf2": {"k": {"passphrase": "${var.p}"}}}},
            "cannot reference variables",
        ),
        (
            {"key_provider": {"pbkdf2": {"k": {"passphrase": "a" * 16, "passphrase_env": "X"}}}},
            "set only one of",
        ),
        ({"key_provider": {"gcp_kms": {"k": {}}}}, "not supported by stateward"),
        ({"key_provider": {"vault": {"k": {}}}}, "unknown key provider type"),
        ({"method": {"aes_gcm": {"m": {"keys": "key_provider.pbkdf2.nope"}}}}, "not declared"),
        (
            {"method": {"aes_gcm": {"m": {"keys": {"encryption_key": [1, 2, 300]}}}}},
            "list of numbers 0-255",
        ),
        (
            {
                "method": {"aes_gcm": {"m": {"keys": {"encryption_key": [1, 2, 3]}}}},
                "state": {"method": "method.aes_gcm.m"},
            },
            "16, 24 or 32-byte",
        ),
        (
            {
                "method": {"unencrypted": {"u": {}}},
                "state": {"method": "method.unencrypted.u", "enforced": True},
            },
            "enforced is set but the method is unencrypted",
        ),
        ({"state": {"method": "method.aes_gcm.x"}}, "method.aes_gcm.x is not declared"),
        ({"state": {"method": "key_provider.pbkdf2.main"}}, "must be a reference like"),
        ({"remote_state_data_sources": {}}, "not supported"),
        ({"keyprovider": {}}, "unknown top-level setting"),
        (
            {
                "key_provider": {"aws_kms": {"k": {"kms_key_id": "x", "key_spec": "AES_512"}}},
                "method": {"aes_gcm": {"m": {"keys": "key_provider.aws_kms.k"}}},
                "state": {"method": "method.aes_gcm.m"},
            },
            "key_spec must be one of",
        ),
        (
            {
                "key_provider": {"openbao": {"k": {"key_name": "x", "key_length": 24}}},
                "method": {"aes_gcm": {"m": {"keys": "key_provider.openbao.k"}}},
                "state": {"method": "method.aes_gcm.m"},
            },
            "key_length must be one of 16, 32 or 64",
        ),
        (
            {
                "key_provider": {
                    "pbkdf2": {
                        "a": {"passphrase": PASSPHRASE, "encrypted_metadata_alias": "same"},
                        "b": {"passphrase": PASSPHRASE, "encrypted_metadata_alias": "same"},
                    }
                }
            },
            "also used by",
        ),
    ],
)
def test_invalid_descriptions(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config = parse_config(doc)
        build_target(config, "state")  # provider-level checks run when built
    assert "\n" not in str(info.value)


def test_missing_target_and_missing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no plan"):
        build_target(parse_config(CONFIGS["pbkdf2"]), "plan")
    monkeypatch.delenv("NOPE_PASS", raising=False)
    cfg = parse_config(
        {**CONFIGS["pbkdf2"], "key_provider": {"pbkdf2": {"main": {"passphrase_env": "NOPE_PASS"}}}}
    )
    with pytest.raises(ConfigError, match="environment variable NOPE_PASS is not set"):
        build_target(cfg, "state")
    # Inspecting needs no secret at all.
    assert inspect_payload(vec("real_state_pbkdf2_default.tfstate"), "state", cfg).encrypted


def test_raw_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAW_KEY", base64.b64encode(seq(32, 0x01)).decode())
    config = parse_config(
        {
            "method": {
                "aes_gcm": {
                    "m": {
                        "keys": {"decryption_key_env": "RAW_KEY", "encryption_key_env": "RAW_KEY"}
                    }
                }
            },
            "state": {"method": "method.aes_gcm.m"},
        }
    )
    out = build_target(config, "state").encrypt(vec("plaintext.tfstate"), Scripted([seq(12, 0xE0)]))
    assert out == vec("state_rawkey_aesgcm_deterministic.tfstate")
    monkeypatch.setenv("RAW_KEY", "not base64!")
    with pytest.raises(ConfigError, match="not valid base64"):
        build_target(config, "state")


# --------------------------------------------------------------------------- inspect


def test_inspect_reports_without_secrets() -> None:
    report = inspect_payload(vec("state_pbkdf2_aesgcm_deterministic.tfstate"), "state")
    assert (report.encrypted, report.encryption_version, report.serial, report.lineage) == (
        True,
        "v0",
        3,
        "a8d2a1c4-7d55-4c1b-9a8e-2f0b6c3d4e5f",
    )
    (entry,) = report.meta
    assert (entry.key, entry.provider_type, entry.source) == (
        "key_provider.pbkdf2.main",
        "pbkdf2",
        "address",
    )
    assert entry.details == {
        "iterations": 600000,
        "hash_function": "sha512",
        "key_length": 32,
        "salt_length": 32,
    }
    plan = inspect_payload(vec("real_plan_pbkdf2_default.tfplan"), "plan")
    assert plan.encrypted and plan.serial is None
    raw = inspect_payload(vec("state_rawkey_aesgcm_deterministic.tfstate"), "state")
    assert raw.meta == []
    plain = inspect_payload(vec("plaintext.tfstate"), "state")
    assert (plain.encrypted, plain.terraform_version, plain.serial) == (False, "1.7.0", 3)


# --------------------------------------------------------------------------- properties

STATE_KEYS = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
AAD = st.none() | st.binary(max_size=64)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # includes surrogates
JSON_LEAF = st.none() | st.booleans() | st.integers() | ANY_TEXT
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(ANY_TEXT, kids, max_size=4),
    max_leaves=12,
)


@st.composite
def states(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {"version": 4, "terraform_version": draw(st.text(min_size=1))}
    if draw(st.booleans()):
        doc["serial"] = draw(st.none() | st.integers(0, 2**63 - 1))
    if draw(st.booleans()):
        doc["lineage"] = draw(st.none() | ANY_TEXT)
    doc["outputs"] = draw(st.dictionaries(ANY_TEXT, JSON_VALUE, max_size=3))
    indent = draw(st.sampled_from([None, 2]))
    text = json.dumps(doc, indent=indent, ensure_ascii=draw(st.booleans()))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates can only travel as \ud800 escapes
        return json.dumps(doc, indent=indent).encode("utf-8")


def _raw_target(kind: env_mod.Kind, key: bytes, aad: bytes | None) -> TargetEncryption:
    return TargetEncryption(kind, [AesGcm("m", encryption_key=key, decryption_key=key, aad=aad)])


@settings(max_examples=60, deadline=None)
@given(plaintext=states(), key=STATE_KEYS, aad=AAD)
def test_state_round_trip(plaintext: bytes, key: bytes, aad: bytes | None) -> None:
    target = _raw_target("state", key, aad)
    payload = target.encrypt(plaintext)
    doc = json.loads(payload)
    assert list(doc) == ["serial", "lineage", "meta", "encrypted_data", "encryption_version"]
    # Our own output re-serialises to itself (Go's json.Marshal is canonical for this struct).
    parsed = env_mod.parse(doc, "state")
    assert parsed.serialize("state") == payload
    inner = json.loads(plaintext)
    assert doc["serial"] == inner.get("serial")
    assert doc["lineage"] == gojson.go_text(inner.get("lineage") or "")
    result = target.decrypt(payload)
    assert (result.plaintext, result.migration, result.was_encrypted) == (plaintext, False, True)


@settings(max_examples=40, deadline=None)
@given(body=st.binary(max_size=2048), key=STATE_KEYS, aad=AAD)
def test_plan_round_trip(body: bytes, key: bytes, aad: bytes | None) -> None:
    plan = b"PK" + body
    target = _raw_target("plan", key, aad)
    payload = target.encrypt(plan)
    assert list(json.loads(payload)) == ["meta", "encrypted_data", "encryption_version"]
    assert target.decrypt(payload).plaintext == plan


_PBKDF2_TARGET = TargetEncryption(
    "state",
    [
        AesGcm(
            "m",
            provider=Pbkdf2Provider(
                "p", Secret(b"a-sufficiently-long-passphrase"), Pbkdf2Params(iterations=200_000)
            ),
        ),
        Unencrypted("migrate"),
    ],
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plaintext=states())
def test_pbkdf2_state_round_trip(plaintext: bytes) -> None:
    payload = _PBKDF2_TARGET.encrypt(plaintext)
    assert list(json.loads(payload)["meta"]) == ["key_provider.pbkdf2.p"]
    result = _PBKDF2_TARGET.decrypt(payload)
    assert (result.plaintext, result.method, result.migration) == (
        plaintext,
        "method.aes_gcm.m",
        False,
    )


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | JSON_VALUE.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(
            [
                "encryption_version",
                "meta",
                "encrypted_data",
                "serial",
                "lineage",
                "terraform_version",
            ]
        ),
        JSON_VALUE | st.just("v0"),
    ).map(lambda d: json.dumps(d).encode())
)
def test_garbage_only_raises_tofu_errors(payload: bytes) -> None:
    target = TargetEncryption(
        "state",
        [AesGcm("m", encryption_key=bytes(32), decryption_key=bytes(32)), Unencrypted("u")],
    )
    try:
        target.decrypt(payload)
    except TofuError as exc:
        assert "\n" not in str(exc)
    with contextlib.suppress(TofuError):
        inspect_payload(payload, "state")


@given(ANY_TEXT)
def test_go_string_encoding(text: str) -> None:
    encoded = gojson.string(text)
    assert json.loads(encoded) == gojson.go_text(text)
    assert not any(c in encoded for c in "<>&\u2028\u2029")


def test_go_string_encoding_examples() -> None:
    assert gojson.string("a<b>&c") == '"a\\u003cb\\u003e\\u0026c"'
    assert gojson.string("é\u2028\n") == '"é\\u2028\\n"'


# --------------------------------------------------------------------------- aws_kms (moto)


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[dict[str, str]]:
    """moto in server mode on a free loopback port; yields endpoint, region and two key ids."""
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "AWS_REGION"):
            mp.delenv(name, raising=False)
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            kms = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
            key1 = kms.create_key(Description="stateward-test")["KeyMetadata"]["KeyId"]
            key2 = kms.create_key(Description="other")["KeyMetadata"]["KeyId"]
            yield {"endpoint": endpoint, "key1": key1, "key2": key2, **env}
        finally:
            server.stop()


def _kms_config(kms: dict[str, str], key: str, spec: str = "AES_256") -> dict[str, Any]:
    return {
        "key_provider": {
            "aws_kms": {
                "k": {
                    "kms_key_id": kms[key],
                    "key_spec": spec,
                    "region": "us-east-1",
                    "endpoints": {"kms": kms["endpoint"]},
                }
            }
        },
        "method": {"aes_gcm": {"m": {"keys": "key_provider.aws_kms.k"}}},
        "state": {"method": "method.aes_gcm.m"},
        "plan": {"method": "method.aes_gcm.m"},
    }


@pytest.mark.parametrize("spec", ["AES_256", "AES_128"])
def test_aws_kms_round_trip_against_moto_server(moto_kms: dict[str, str], spec: str) -> None:
    config = parse_config(_kms_config(moto_kms, "key1", spec))
    state = build_target(config, "state")
    payload = state.encrypt(vec("plaintext.tfstate"))
    doc = json.loads(payload)
    meta = json.loads(base64.b64decode(doc["meta"]["key_provider.aws_kms.k"]))
    assert list(meta) == ["ciphertext_blob"] and base64.b64decode(meta["ciphertext_blob"])
    assert state.decrypt(payload).plaintext == vec("plaintext.tfstate")
    # The data key size follows key_spec: 12-byte nonce + ciphertext + tag is the same length,
    # so check the key through the provider itself.
    method = state.chain[0]
    assert isinstance(method, AesGcm) and method.provider is not None
    key = method.provider.decryption_key(base64.b64decode(doc["meta"]["key_provider.aws_kms.k"]))
    assert len(key) == (32 if spec == "AES_256" else 16)
    plan = build_target(config, "plan")
    assert plan.decrypt(plan.encrypt(vec("plaintext_plan.zip"))).plaintext == vec(
        "plaintext_plan.zip"
    )
    report = inspect_payload(payload, "state")
    assert report.meta[0].provider_type == "aws_kms"


def test_aws_kms_failures_are_one_line(moto_kms: dict[str, str]) -> None:
    payload = build_target(parse_config(_kms_config(moto_kms, "key1")), "state").encrypt(
        vec("plaintext.tfstate")
    )
    other = build_target(parse_config(_kms_config(moto_kms, "key2")), "state")
    with pytest.raises(DecryptionError) as info:
        other.decrypt(payload)
    assert "KMS decrypt failed" in str(info.value) and "\n" not in str(info.value)
    doc = json.loads(payload)
    doc["meta"]["key_provider.aws_kms.k"] = base64.b64encode(
        b'{"ciphertext_blob":"' + base64.b64encode(b"garbage" * 20) + b'"}'
    ).decode()
    same = build_target(parse_config(_kms_config(moto_kms, "key1")), "state")
    with pytest.raises(DecryptionError, match="KMS decrypt failed"):
        same.decrypt(json.dumps(doc).encode())
    missing = _kms_config(moto_kms, "key1")
    missing["key_provider"]["aws_kms"]["k"]["kms_key_id"] = "alias/does-not-exist"
    with pytest.raises(KeyProviderError, match="KMS generate_data_key failed: NotFoundException"):
        build_target(parse_config(missing), "state").encrypt(vec("plaintext.tfstate"))


# --------------------------------------------------------------------------- openbao (fake)


class FakeTransit:
    """Just OpenBao's transit ``datakey/plaintext`` and ``decrypt`` endpoints, over real HTTP.

    Data keys are wrapped with a server-side AES-GCM key into ``vault:v1:<b64>``, the shape
    OpenBao returns; a wrong token gets 403 ``{"errors":["permission denied"]}`` as OpenBao does.
    """

    def __init__(self, mount: str = "transit", token: str = "s.test-token") -> None:
        self.mount = mount.strip("/")
        self.token = token
        self.keys = {"tofu": AESGCM.generate_key(256)}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.command, self.path, body))
                status, answer = fake.handle(self.path, self.headers.get("X-Vault-Token"), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, token: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        if token != self.token:
            return 403, {"errors": ["permission denied"]}
        prefix = f"/v1/{self.mount}/"
        if not path.startswith(prefix):
            return 404, {"errors": []}
        op, _, name = path[len(prefix) :].rpartition("/")
        if name not in self.keys:
            return 400, {"errors": ["encryption key not found"]}
        aes = AESGCM(self.keys[name])
        if op == "datakey/plaintext" and body.get("bits") in (128, 256, 512):
            key = os.urandom(body["bits"] // 8)
            nonce = os.urandom(12)
            wrapped = base64.b64encode(nonce + aes.encrypt(nonce, key, None)).decode()
            return 200, {
                "data": {
                    "plaintext": base64.b64encode(key).decode(),
                    "ciphertext": f"vault:v1:{wrapped}",
                    "key_version": 1,
                }
            }
        if op == "decrypt" and isinstance(body.get("ciphertext"), str):
            raw = body["ciphertext"]
            if not raw.startswith("vault:v1:"):
                return 400, {"errors": ["invalid ciphertext: no prefix"]}
            blob = base64.b64decode(raw[len("vault:v1:") :])
            try:
                key = aes.decrypt(blob[:12], blob[12:], None)
            except Exception:
                return 400, {"errors": ["cipher: message authentication failed"]}
            return 200, {"data": {"plaintext": base64.b64encode(key).decode()}}
        return 400, {"errors": ["unsupported request"]}

    def __enter__(self) -> FakeTransit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def transit(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTransit]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("BAO_ADDR", raising=False)
    monkeypatch.delenv("BAO_TOKEN", raising=False)
    with FakeTransit(mount="secrets/transit-team") as fake:
        yield fake


def _bao_config(fake: FakeTransit, **extra: Any) -> dict[str, Any]:
    provider = {
        "key_name": "tofu",
        "address": fake.address,
        "token_env": "BAO_TEST_TOKEN",
        "transit_engine_path": "/secrets/transit-team",
        **extra,
    }
    return {
        "key_provider": {"openbao": {"bao": provider}},
        "method": {"aes_gcm": {"m": {"keys": "key_provider.openbao.bao"}}},
        "state": {"method": "method.aes_gcm.m"},
    }


def test_openbao_round_trip_against_fake_transit(
    transit: FakeTransit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAO_TEST_TOKEN", transit.token)
    state = build_target(parse_config(_bao_config(transit)), "state")
    payload = state.encrypt(vec("plaintext.tfstate"))
    meta_b64 = json.loads(payload)["meta"]["key_provider.openbao.bao"]
    meta = json.loads(base64.b64decode(meta_b64))
    assert list(meta) == ["ciphertext"]
    assert base64.b64decode(meta["ciphertext"]).startswith(b"vault:v1:")
    assert state.decrypt(payload).plaintext == vec("plaintext.tfstate")
    assert [(m, p) for m, p, _ in transit.requests] == [
        ("POST", "/v1/secrets/transit-team/datakey/plaintext/tofu"),
        ("POST", "/v1/secrets/transit-team/decrypt/tofu"),
    ]
    assert transit.requests[0][2] == {"bits": 256}
    assert transit.requests[1][2] == {"ciphertext": base64.b64decode(meta["ciphertext"]).decode()}
    entry = inspect_payload(payload, "state").meta[0]
    assert (entry.provider_type, entry.details) == ("openbao", {"wrapped_key_version": "vault:v1"})


def test_openbao_defaults_and_errors(transit: FakeTransit, monkeypatch: pytest.MonkeyPatch) -> None:
    # BAO_ADDR / BAO_TOKEN defaults, key_length 16 -> 128 bits.
    monkeypatch.setenv("BAO_ADDR", transit.address)
    monkeypatch.setenv("BAO_TOKEN", transit.token)
    cfg = _bao_config(transit, key_length=16)
    provider = cfg["key_provider"]["openbao"]["bao"]
    del provider["address"], provider["token_env"]
    state = build_target(parse_config(cfg), "state")
    payload = state.encrypt(vec("plaintext.tfstate"))
    assert transit.requests[-1][2] == {"bits": 128}
    assert state.decrypt(payload).plaintext == vec("plaintext.tfstate")
    # Wrong token: one line naming the HTTP status and OpenBao's error, never the token.
    monkeypatch.setenv("BAO_TOKEN", "s.wrong-token-value")
    wrong = build_target(parse_config(cfg), "state")
    with pytest.raises(DecryptionError) as info:
        wrong.decrypt(payload)
    msg = str(info.value)
    assert "HTTP 403: permission denied" in msg and "wrong-token" not in msg and "\n" not in msg
    # Default transit path "/transit" is not mounted on this fake: a clear 404.
    monkeypatch.setenv("BAO_TOKEN", transit.token)
    del provider["transit_engine_path"]
    with pytest.raises(KeyProviderError, match="HTTP 404"):
        build_target(parse_config(cfg), "state").encrypt(vec("plaintext.tfstate"))
    assert transit.requests[-1][1] == "/v1/transit/datakey/plaintext/tofu"
    # Unreachable server.
    cfg2 = _bao_config(transit, address=f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("BAO_TEST_TOKEN", transit.token)
    with pytest.raises(KeyProviderError, match="cannot reach"):
        build_target(parse_config(cfg2), "state").encrypt(vec("plaintext.tfstate"))


# --------------------------------------------------------------------------- CLI


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stateward", "tofu", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    path = tmp_path / "encryption.toml"
    path.write_text(
        """
[key_provider.pbkdf2.main]
passphrase_env = "TOFU_PASSPHRASE"
iterations = 200000

[method.aes_gcm.m]
keys = "key_provider.pbkdf2.main"

[method.unencrypted.migrate]

[state]
method = "method.aes_gcm.m"
fallback = ["method.unencrypted.migrate"]

[plan]
method = "method.aes_gcm.m"
"""
    )
    return path


PASS_ENV = {"TOFU_PASSPHRASE": PASSPHRASE}


def test_cli_decrypt_sample_to_stdout_and_file(tmp_path: Path, cli_config: Path) -> None:
    sample = str(VECTORS / "real_state_pbkdf2_default.tfstate")
    proc = run_cli("decrypt", "--config", str(cli_config), sample, env=PASS_ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == vec("plaintext.tfstate")
    assert proc.stderr == b""
    out = tmp_path / "out.tfstate"
    proc = run_cli(
        "decrypt", "--config", str(cli_config), "-o", str(out), sample, env=PASS_ENV, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == vec("plaintext.tfstate")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_cli_plan_decrypt(tmp_path: Path, cli_config: Path) -> None:
    proc = run_cli(
        "decrypt",
        "--config",
        str(cli_config),
        "--plan",
        str(VECTORS / "real_plan_pbkdf2_default.tfplan"),
        env=PASS_ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == vec("plaintext_plan.zip")


def test_cli_encrypt_stdin_round_trip_and_migration(tmp_path: Path, cli_config: Path) -> None:
    enc = run_cli(
        "encrypt",
        "--config",
        str(cli_config),
        "-",
        env=PASS_ENV,
        stdin=vec("plaintext.tfstate"),
        cwd=tmp_path,
    )
    assert enc.returncode == 0, enc.stderr
    doc = json.loads(enc.stdout)
    assert doc["encryption_version"] == "v0" and doc["serial"] == 3
    meta = json.loads(base64.b64decode(doc["meta"]["key_provider.pbkdf2.main"]))
    assert meta["iterations"] == 200000
    dec = run_cli(
        "decrypt", "--config", str(cli_config), "-", env=PASS_ENV, stdin=enc.stdout, cwd=tmp_path
    )
    assert dec.returncode == 0 and dec.stdout == vec("plaintext.tfstate") and dec.stderr == b""
    mig = run_cli(
        "decrypt",
        "--config",
        str(cli_config),
        str(VECTORS / "plaintext.tfstate"),
        env=PASS_ENV,
        cwd=tmp_path,
    )
    assert mig.returncode == 0
    assert mig.stdout == vec("plaintext.tfstate")
    assert mig.stderr.decode().strip() == (
        "migration: decrypted with fallback method method.unencrypted.migrate"
    )


def test_cli_inspect_shows_no_secret(tmp_path: Path, cli_config: Path) -> None:
    proc = run_cli(
        "inspect", str(VECTORS / "state_pbkdf2_aesgcm_deterministic.tfstate"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    for expected in (
        "encryption_version: v0",
        "serial: 3",
        "lineage: a8d2a1c4-7d55-4c1b-9a8e-2f0b6c3d4e5f",
        "meta key_provider.pbkdf2.main: provider type pbkdf2",
        "iterations: 600000",
        "hash_function: sha512",
    ):
        assert expected in text
    proc = run_cli(
        "inspect",
        "--json",
        "--config",
        str(cli_config),
        str(VECTORS / "real_plan_pbkdf2_default.tfplan"),
        "--plan",
        env=PASS_ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kind"] == "plan" and report["meta"][0]["details"]["iterations"] == 600000
    assert PASSPHRASE.encode() not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["decrypt", "{cfg}", str(VECTORS / "fake_encrypted_must_reject.tfstate")],
            None,
            "invalid encrypted payload: meta entry 'key_provider.pbkdf2.main' is not a base64",
        ),
        (["decrypt", "{cfg}", "-"], b"hello", "neither an OpenTofu-encrypted state"),
        (["decrypt", "{cfg}", "missing.tfstate"], None, "cannot read missing.tfstate"),
        (
            ["encrypt", "{cfg}", str(VECTORS / "real_state_pbkdf2_default.tfstate")],
            None,
            "already an encrypted state",
        ),
        (["decrypt", "--config", "nope.toml", "-"], b"", "cannot read nope.toml"),
    ],
)
def test_cli_failures_are_one_line(
    tmp_path: Path, cli_config: Path, args: list[str], stdin: bytes | None, message: str
) -> None:
    argv: list[str] = []
    for arg in args:
        argv += ["--config", str(cli_config)] if arg == "{cfg}" else [arg]
    proc = run_cli(*argv, env=PASS_ENV, stdin=stdin, cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("Error: ") and message in err, err
    assert proc.stdout == b""


def test_cli_wrong_passphrase(tmp_path: Path, cli_config: Path) -> None:
    wrong = "a-wrong-passphrase-of-length"
    proc = run_cli(
        "decrypt",
        "--config",
        str(cli_config),
        str(VECTORS / "state_rawkey_aesgcm_deterministic.tfstate"),
        env={"TOFU_PASSPHRASE": wrong},
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "no metadata for key_provider.pbkdf2.main" in err and wrong not in err
    proc = run_cli(
        "decrypt",
        "--config",
        str(cli_config),
        str(VECTORS / "real_state_pbkdf2_default.tfstate"),
        env={"TOFU_PASSPHRASE": wrong},
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and b"authentication failed" in proc.stderr
    assert wrong.encode() not in proc.stderr


def test_cli_aws_kms_round_trip(tmp_path: Path, moto_kms: dict[str, str]) -> None:
    cfg = tmp_path / "kms.json"
    cfg.write_text(json.dumps(_kms_config(moto_kms, "key1")))
    env = {k: v for k, v in moto_kms.items() if k.startswith("AWS_")}
    enc = run_cli(
        "encrypt", "--config", str(cfg), str(VECTORS / "plaintext.tfstate"), env=env, cwd=tmp_path
    )
    assert enc.returncode == 0, enc.stderr
    dec = run_cli("decrypt", "--config", str(cfg), "-", stdin=enc.stdout, env=env, cwd=tmp_path)
    assert dec.returncode == 0, dec.stderr
    assert dec.stdout == vec("plaintext.tfstate")


def test_vectors_hash_sanity() -> None:
    """The plaintexts are the README's (guards against a silently changed vector directory)."""
    doc = json.loads(vec("plaintext.tfstate"))
    assert (doc["serial"], doc["lineage"]) == (3, "a8d2a1c4-7d55-4c1b-9a8e-2f0b6c3d4e5f")
    assert vec("plaintext_plan.zip").startswith(b"PK")
    assert hashlib.sha256(vec("real_state_pbkdf2_default.tfstate")).hexdigest() == (
        "3d6b9b64c0374261d5eb444b9f1ae1222fc617e2d149bc907ba2d9ad97a9d320"
    )


def test_docs_translation_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TOML translation in docs/opentofu-encryption.md parses, in both fallback spellings."""
    doc = (Path(__file__).parents[1] / "docs" / "opentofu-encryption.md").read_text()
    match = re.search(r"stateward \(`encryption.toml`\):\n\n```toml\n(.*?)```", doc, re.S)
    assert match is not None
    listed = match.group(1)
    nested = re.sub(r"(?m)^fallback = .*\n", "", listed).replace("# [state", "[state")
    nested = nested.replace('# method = "method.', 'method = "method.')
    for text in (listed, nested):
        config = parse_config(tomllib.loads(text))
        assert config.state is not None and config.plan is not None
        assert [str(r) for r in config.state.chain] == [
            "method.aes_gcm.new",
            "method.aes_gcm.old",
            "method.unencrypted.migrate",
        ]
        assert config.plan.enforced
