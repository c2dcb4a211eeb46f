"""Brute-force throttle: policy, back-off, expiry, isolation, memory bound, threads."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stateward.auth.throttle import (
    MAX_KEY_VALUE_LENGTH,
    FailureThrottle,
    ThrottleKey,
    address_key,
    token_key,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


A: ThrottleKey = ("addr", "192.0.2.1")
B: ThrottleKey = ("addr", "192.0.2.2")


def make(**kwargs: float) -> tuple[FailureThrottle, FakeClock]:
    clock = FakeClock()
    params: dict[str, float] = {
        "max_failures": 5,
        "window_seconds": 60,
        "base_block_seconds": 30,
        "max_block_seconds": 240,
    }
    params.update(kwargs)
    throttle = FailureThrottle(
        max_failures=int(params["max_failures"]),
        window_seconds=params["window_seconds"],
        base_block_seconds=params["base_block_seconds"],
        max_block_seconds=params["max_block_seconds"],
        max_keys=int(params.get("max_keys", 100_000)),
        clock=clock,
    )
    return throttle, clock


def fail(throttle: FailureThrottle, keys: list[ThrottleKey], times: int) -> list[object]:
    blocks: list[object] = []
    for _ in range(times):
        blocks.extend(throttle.record_failure(keys))
    return blocks


def test_defaults_match_docs() -> None:
    t = FailureThrottle()
    assert (t.max_failures, t.window_seconds, t.base_block_seconds) == (10, 300, 30)
    assert (t.max_block_seconds, t.max_keys) == (900, 100_000)


def test_below_threshold_nothing_blocks() -> None:
    t, _ = make()
    assert fail(t, [A], 5) == []
    assert t.check([A]) is None


def test_failures_outside_window_do_not_count() -> None:
    t, clock = make()
    for _ in range(10):
        assert t.record_failure([A]) == []
        clock.advance(15)  # 5 failures span 60 s: never more than 4 in any window + the new one
    assert t.check([A]) is None


def test_next_failure_blocks_with_retry_after_base() -> None:
    t, clock = make()
    fail(t, [A], 5)
    blocks = t.record_failure([A])
    assert len(blocks) == 1
    block = blocks[0]
    assert block.key == A and block.strike == 1 and block.failures == 6
    assert block.seconds == pytest.approx(30)
    assert block.until == pytest.approx(clock.now + 30)
    assert t.check([A]) == pytest.approx(30)
    clock.advance(10)
    assert t.check([A]) == pytest.approx(20)


def test_blocks_expire() -> None:
    t, clock = make()
    fail(t, [A], 6)
    clock.advance(29.9)
    assert t.check([A]) is not None
    clock.advance(0.2)
    assert t.check([A]) is None
    # after the block, the count starts afresh: five more failures are allowed
    assert fail(t, [A], 5) == []
    assert t.check([A]) is None


def test_exponential_backoff_up_to_cap() -> None:
    t, clock = make()
    lengths = []
    for _ in range(6):
        blocks = fail(t, [A], 6)
        assert len(blocks) == 1
        retry = t.check([A])
        assert retry is not None
        lengths.append(retry)
        clock.advance(retry)
        assert t.check([A]) is None
    assert lengths == pytest.approx([30, 60, 120, 240, 240, 240])


def test_backoff_forgotten_after_quiet_window() -> None:
    t, clock = make()
    fail(t, [A], 6)
    clock.advance(30)
    fail(t, [A], 6)
    assert t.check([A]) == pytest.approx(60)
    clock.advance(60 + 60)  # block over, then a whole quiet window
    fail(t, [A], 6)
    assert t.check([A]) == pytest.approx(30)


def test_failures_while_blocked_are_ignored() -> None:
    t, clock = make()
    fail(t, [A], 6)
    assert fail(t, [A], 50) == []
    assert t.check([A]) == pytest.approx(30)
    clock.advance(30)
    assert fail(t, [A], 5) == []


def test_success_clears_count_but_not_block() -> None:
    t, _ = make()
    fail(t, [A], 5)
    t.record_success([A])
    assert fail(t, [A], 5) == []  # count was reset, so five more are fine
    assert t.check([A]) is None
    fail(t, [A], 1)
    assert t.check([A]) is not None
    t.record_success([A])
    assert t.check([A]) == pytest.approx(30)


def test_success_of_untracked_key_is_noop() -> None:
    t, _ = make()
    t.record_success([A, ("token", "x")])
    assert len(t) == 0


def test_one_blocked_address_does_not_block_another() -> None:
    t, _ = make()
    fail(t, [A], 6)
    assert t.check([A]) is not None
    assert t.check([B]) is None
    assert t.check([B, ("token", "ci")]) is None
    assert fail(t, [B], 5) == []


def test_blocked_token_name_blocked_from_every_address() -> None:
    t, _ = make()
    tok = token_key("ci-prod")
    # six different addresses each guess once: no address is blocked, the token name is
    blocks = []
    for i in range(6):
        blocks += t.record_failure([address_key(f"198.51.100.{i}"), tok])
    assert [b.key for b in blocks] == [tok]
    assert t.check([address_key("203.0.113.9"), tok]) == pytest.approx(30)
    assert t.check([address_key("203.0.113.9"), token_key("other")]) is None
    assert t.check([address_key("198.51.100.0")]) is None


def test_duplicate_keys_count_once() -> None:
    t, _ = make()
    fail(t, [A, A], 5)
    assert t.check([A]) is None


def test_ipv4_per_address() -> None:
    assert address_key("192.0.2.1") == ("addr", "192.0.2.1")
    assert address_key(" 192.0.2.1 ") == ("addr", "192.0.2.1")
    assert address_key("192.0.2.1") != address_key("192.0.2.2")
    assert address_key("::ffff:192.0.2.1") == ("addr", "192.0.2.1")


def test_ipv6_grouped_by_64() -> None:
    key = address_key("2001:db8:1:2:aaaa::1")
    assert key == ("addr", "2001:db8:1:2::/64")
    assert address_key("2001:DB8:1:2:ffff:ffff:ffff:ffff") == key
    assert address_key("2001:db8:1:2::1%eth0") == key
    assert address_key("2001:db8:1:3::1") != key


def test_ipv6_64_blocked_together() -> None:
    t, _ = make()
    for i in range(6):
        t.record_failure([address_key(f"2001:db8:0:1::{i:x}")])
    assert t.check([address_key("2001:db8:0:1:dead:beef::7")]) is not None
    assert t.check([address_key("2001:db8:0:2::1")]) is None


def test_invalid_addresses_get_own_capped_key() -> None:
    kind, value = address_key("not-an-ip")
    assert kind == "addr" and "not-an-ip" in value
    assert address_key("not-an-ip") != address_key("192.0.2.1")
    assert address_key("x") != address_key("y")
    assert len(address_key("z" * 10_000)[1]) <= MAX_KEY_VALUE_LENGTH
    assert len(token_key("n" * 10_000)[1]) <= MAX_KEY_VALUE_LENGTH


def test_memory_bound_under_address_spray() -> None:
    t, clock = make(max_keys=1000)
    victim_token = token_key("admin")
    for i in range(200_000):
        keys = [("addr", f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"), victim_token]
        if i % 2 or t.check(keys) is None:  # as wired (check first), and without checking
            t.record_failure(keys)
        if i % 1000 == 0:
            clock.advance(0.001)
        assert len(t._entries) <= 1000 or i < 1000
    assert len(t) <= 1000
    # the continuously attacked token name is recent, so it is never the one evicted
    assert t.check([victim_token]) is not None


def test_entries_expire() -> None:
    t, clock = make()
    for i in range(100):
        t.record_failure([("addr", f"192.0.2.{i}")])
    assert len(t) == 100
    clock.advance(61)
    assert t.sweep() == 100
    assert len(t) == 0
    # lazy expiry on check() and on inserting new keys
    t.record_failure([A])
    clock.advance(61)
    assert t.check([A]) is None
    assert len(t) == 0
    t.record_failure([A])
    clock.advance(61)
    t.record_failure([B])
    assert len(t) == 1


def test_blocked_entry_outlives_block_and_window() -> None:
    t, clock = make()
    fail(t, [A], 6)
    clock.advance(30 + 59)
    assert t.sweep() == 0
    clock.advance(1)
    assert t.sweep() == 1


def test_invalid_parameters_rejected() -> None:
    for kwargs in (
        {"max_failures": 0},
        {"window_seconds": 0},
        {"base_block_seconds": 0},
        {"max_block_seconds": 10},
        {"max_keys": 0},
    ):
        with pytest.raises(ValueError):
            make(**kwargs)


def test_thread_safety_smoke() -> None:
    threads_n, per_thread = 8, 500
    t = FailureThrottle(max_failures=threads_n * per_thread, window_seconds=3600)
    shared = token_key("shared")
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def hammer(n: int) -> None:
        try:
            barrier.wait()
            own = ("addr", f"192.0.2.{n}")
            for _ in range(per_thread):
                assert t.record_failure([own, shared]) == []
                t.check([own, shared])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert len(t._entries[shared].failures) == threads_n * per_thread
    for n in range(threads_n):
        assert len(t._entries[("addr", f"192.0.2.{n}")].failures) == per_thread
    # exactly one more failure of the shared key blocks it, exactly once
    assert [b.key for b in t.record_failure([shared])] == [shared]


KEYS = [("addr", "a"), ("addr", "b"), ("token", "t")]
EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["fail", "success", "check"]),
        st.lists(st.sampled_from(KEYS), min_size=1, max_size=3),
        st.floats(min_value=0, max_value=120, allow_nan=False),
    ),
    max_size=80,
)


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_property_bounded_and_never_premature(
    events: list[tuple[str, list[ThrottleKey], float]],
) -> None:
    t, clock = make(max_failures=3, window_seconds=30, base_block_seconds=5, max_block_seconds=40)
    # a reference model of failures that counted, since each key's last block or success
    counted: dict[ThrottleKey, list[float]] = {k: [] for k in KEYS}
    for action, keys, dt in events:
        clock.advance(dt)
        if action == "fail":
            before = {k: t.check([k]) for k in set(keys)}
            blocks = t.record_failure(keys)
            for k in set(keys):
                if before[k] is None:
                    counted[k].append(clock.now)
            for block in blocks:
                window = [x for x in counted[block.key] if x > clock.now - 30]
                assert len(window) > 3, "blocked with too few failures in the window"
                assert 0 < block.seconds <= 40
                counted[block.key] = []
        elif action == "success":
            t.record_success(keys)
            for k in keys:
                counted[k] = []
        retry = t.check(keys)
        assert retry is None or 0 < retry <= 40
