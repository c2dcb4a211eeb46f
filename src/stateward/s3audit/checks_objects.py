"""The objects themselves: which are states, locks and digests; then, per current state,
its encryption, size, ACL, digest, and the secrets inside it.

Reads are bounded: an object listed above ``max_state_bytes`` is never fetched, and a fetch
asks for at most that many bytes plus one (a Range request) and stops reading there, so an
object that grew since the listing costs no more.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from stateward.domain import s3layout
from stateward.s3audit.awsapi import Clients, Unchecked, call
from stateward.s3audit.checks_bucket import public_grants
from stateward.s3audit.model import Recorder
from stateward.s3audit.target import StateObject, Target

_OBJECT_IDS = ("SW-S3-040", "SW-S3-041", "SW-S3-033", "SW-S3-044")


class TooLarge(Exception):
    pass


def list_objects(c: Clients, t: Target, rec: Recorder) -> bool:
    """Sort the keys under the prefix (and its workspaces) into states, locks and digests."""
    seen: set[str] = set()
    try:
        pages = c.s3.get_paginator("list_objects_v2")
        for prefix in s3layout.list_prefixes(t.key_prefix, t.workspace_key_prefix):
            for page in call("s3:ListObjectsV2", lambda p=prefix: list(
                    pages.paginate(Bucket=t.bucket, Prefix=p))):
                for obj in page.get("Contents", []) or []:
                    key = str(obj["Key"])
                    if key in seen or not s3layout.selected(key, t.key_prefix,
                                                            t.workspace_key_prefix):
                        continue
                    seen.add(key)
                    item = StateObject(key, int(obj.get("Size", 0)), obj.get("LastModified"))
                    if key.endswith(s3layout.LOCK_SUFFIX):
                        t.locks.append(item)
                    elif key.endswith(s3layout.DIGEST_SUFFIX):
                        t.digests.append(item)
                    elif not key.endswith("/"):
                        t.states.append(item)
    except Unchecked as exc:
        rec.not_checked((*_OBJECT_IDS, "SW-S3-042", "SW-S3-043"), t.url(t.key_prefix),
                        str(exc))
        return False
    t.states.sort(key=lambda s: s.key)
    return True


def read_bounded(c: Clients, bucket: str, key: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the object; TooLarge if it holds more."""
    answer = call("s3:GetObject", c.s3.get_object, Bucket=bucket, Key=key,
                  Range=f"bytes=0-{limit}")
    body = answer["Body"]
    try:
        data = bytes(body.read(limit + 1))
    finally:
        body.close()
    if len(data) > limit:
        raise TooLarge()
    return data


def _encryption(c: Clients, t: Target, obj: StateObject, rec: Recorder) -> None:
    res = t.url(obj.key)
    if t.key_arn is None:
        rec.not_applicable("SW-S3-040", res, "no customer-managed bucket key to compare with")
        return
    try:
        head = call("s3:HeadObject", c.s3.head_object, Bucket=t.bucket, Key=obj.key)
    except Unchecked as exc:
        rec.not_checked("SW-S3-040", res, str(exc))
        return
    sse = head.get("ServerSideEncryption") or "none"
    key = head.get("SSEKMSKeyId") or ""
    same = key == t.key_arn or key.rsplit("/", 1)[-1] == t.key_arn.rsplit("/", 1)[-1]
    problem = None
    if sse != "aws:kms":
        problem = f"encrypted with {sse}"
    elif not same:
        problem = f"encrypted with another key: {key}"
    rec.result("SW-S3-040", res, problem, **t.context(object=obj.key))


def _acl(c: Clients, t: Target, obj: StateObject, rec: Recorder) -> None:
    res = t.url(obj.key)
    try:
        acl = call("s3:GetObjectAcl", c.s3.get_object_acl, Bucket=t.bucket, Key=obj.key)
    except Unchecked as exc:
        rec.not_checked("SW-S3-033", res, str(exc))
        return
    grants = public_grants(acl)
    rec.result("SW-S3-033", res, f"object ACL grants {', '.join(grants)}" if grants else None,
               **t.context(object=obj.key))


def _content(c: Clients, t: Target, obj: StateObject, rec: Recorder) -> None:
    from stateward.domain.secretscan import scan_report

    res = t.url(obj.key)
    ctx = t.context(object=obj.key)
    if obj.size == 0:
        rec.finding("SW-S3-041", res, "empty object (0 bytes)", **ctx)
        rec.not_applicable("SW-S3-044", res, "empty object")
        return
    if obj.size > t.max_state_bytes:
        rec.finding("SW-S3-041", res, f"{obj.size} bytes, above --max-state-bytes "
                    f"{t.max_state_bytes}: not read", **ctx)
        rec.not_checked("SW-S3-044", res, f"not scanned: larger than {t.max_state_bytes} bytes")
        return
    try:
        body = read_bounded(c, t.bucket, obj.key, t.max_state_bytes)
    except TooLarge:
        rec.finding("SW-S3-041", res, f"grew above --max-state-bytes {t.max_state_bytes} "
                    "since it was listed: not read", **ctx)
        rec.not_checked("SW-S3-044", res, "not scanned: too large")
        return
    except Unchecked as exc:
        rec.not_checked(("SW-S3-041", "SW-S3-044", "SW-S3-043"), res, str(exc))
        return
    rec.passed("SW-S3-041", res)
    t.md5[obj.key] = hashlib.md5(body, usedforsecurity=False).hexdigest()
    report = scan_report(body)
    if not report.scanned:
        rec.not_applicable("SW-S3-044", res, report.note or f"nothing to scan ({report.format})")
        return
    if not report.findings:
        rec.passed("SW-S3-044", res)
    for f in report.findings:
        rec.finding("SW-S3-044", res, f"{f.kind} at {f.location} (rule {f.rule})", **ctx)


def _stale_locks(t: Target, rec: Recorder) -> None:
    """Age by S3's LastModified, never by the lock body's own ``Created`` (a client writes
    that, and it can say anything)."""
    limit = dt.timedelta(hours=t.stale_lock_hours)
    for lock in t.locks:
        res = t.url(lock.key)
        when = lock.modified
        if not isinstance(when, dt.datetime):
            rec.not_checked("SW-S3-042", res, "lock object has no LastModified")
            continue
        age = t.now - when
        rec.result("SW-S3-042", res, f"held for {age.total_seconds() / 3600:.1f} h (more than "
                   f"{t.stale_lock_hours:g} h)" if age > limit else None,
                   **t.context(object=lock.key))


def _digest_objects(c: Clients, t: Target, rec: Recorder) -> None:
    for digest in t.digests:
        res = t.url(digest.key)
        state = digest.key[: -len(s3layout.DIGEST_SUFFIX)]
        if state not in t.md5:
            rec.not_applicable("SW-S3-043", res, "no readable state object for this digest")
            continue
        try:
            body = read_bounded(c, t.bucket, digest.key, 1024)
        except (Unchecked, TooLarge) as exc:
            rec.not_checked("SW-S3-043", res, str(exc) or "digest object too large")
            continue
        value = body.decode("ascii", "replace").strip().lower()
        rec.result("SW-S3-043", res, None if value == t.md5[state] else
                   "digest object differs from the state's MD5", **t.context(object=state))


def objects(c: Clients, t: Target, rec: Recorder) -> None:
    if not list_objects(c, t, rec):
        return
    if not t.states:
        rec.not_applicable(_OBJECT_IDS, t.url(t.key_prefix), "no state objects under the prefix")
    shown = t.states[: t.max_objects]
    if len(t.states) > len(shown):
        rec.not_checked(_OBJECT_IDS, t.url(t.key_prefix), f"{len(t.states) - len(shown)} "
                        f"state objects beyond --max-objects {t.max_objects} not examined")
    for obj in shown:
        _encryption(c, t, obj, rec)
        _acl(c, t, obj, rec)
        _content(c, t, obj, rec)
    _stale_locks(t, rec)
    _digest_objects(c, t, rec)

