"""moto workarounds for the S3 audit tests, each one labelled (see the MOTO notes in
docs/s3-audit.md). They change how moto's in-process server (ThreadedMotoServer) evaluates
bucket policies; production code is not shaped around them.

- moto 5.2 evaluates every statement with a ``Condition`` as matching, whatever its Effect, so a
  bucket with the three hardening denies could neither be read nor written (nor audited).
  :func:`unconditional_bucket_policies` makes moto enforce only the unconditional statements.
- moto's PutBucketLogging check reads each target-bucket policy statement's ``Principal`` as an
  object (``"Principal": "*"`` crashes it) and wants ``Resource`` to equal
  ``<bucket>/<prefix>*`` exactly. :func:`lenient_logging_policy` accepts any statement
  allowing ``logging.s3.amazonaws.com`` PutObject on a resource pattern covering the prefix.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult
from moto.s3.models import FakeBucket


def _unconditional(self: FakeBucket, action: str, resource: str) -> Any:
    if self.policy is None:
        return PermissionResult.NEUTRAL
    try:
        doc = json.loads(self.policy.decode())
        stmts = doc.get("Statement", [])
        stmts = [s for s in (stmts if isinstance(stmts, list) else [stmts])
                 if isinstance(s, dict) and "Condition" not in s
                 and s.get("Effect") in ("Allow", "Deny")]
    except (ValueError, AttributeError):
        return PermissionResult.NEUTRAL  # a malformed policy (abuse tests) enforces nothing
    if not stmts:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**doc, "Statement": stmts})).is_action_permitted(action, resource)


def _logging_allowed(target_bucket: FakeBucket, target_prefix: str | None) -> bool:
    if not target_bucket.policy:
        return False
    doc = json.loads(target_bucket.policy.decode())
    for stmt in doc.get("Statement", []):
        principal = stmt.get("Principal")
        service = principal.get("Service") if isinstance(principal, dict) else None
        actions = stmt.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = stmt.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        want = f"arn:aws:s3:::{target_bucket.name}/{target_prefix or ''}x"
        if (service == "logging.s3.amazonaws.com" and stmt.get("Effect") == "Allow"
                and "s3:PutObject" in actions
                and any(fnmatch.fnmatchcase(want, r) for r in resources)):
            return True
    return False


@contextlib.contextmanager
def moto_policy_workarounds() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeBucket, "get_permission", _unconditional)
        mp.setattr(FakeBucket, "_log_permissions_enabled_policy", staticmethod(_logging_allowed))
        yield
