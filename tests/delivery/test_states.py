"""Outbox and inbox transitions come from one table; terminal states absorb."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pdoc.delivery.retry import RetryPolicy
from p2pdoc.delivery.states import (
    Acked,
    AttemptFailed,
    AttemptStarted,
    BlocksServed,
    DeadlinePassed,
    InboxEntry,
    InboxState,
    OutboxEntry,
    OutboxState,
    ReceiptAccepted,
    Stored,
    advance_inbox,
    advance_outbox,
)
from p2pdoc.errors import InvalidValue, LocalProtocolError

S = OutboxState


def test_happy_path_records_every_transition() -> None:
    entry = OutboxEntry(deadline=10_000)
    entry = advance_outbox(entry, AttemptStarted(1))
    assert entry.state is S.OFFERING and entry.attempts == 1
    entry = advance_outbox(entry, BlocksServed(2, 1, 3))
    assert entry.state is S.TRANSFERRING
    entry = advance_outbox(entry, BlocksServed(3, 3, 3))
    assert entry.state is S.AWAITING_RECEIPT
    entry = advance_outbox(entry, ReceiptAccepted(4, b"receipt"))
    assert entry.state is S.DELIVERED and entry.receipt == b"receipt"
    assert [h[1] for h in entry.history] == [
        "offering",
        "transferring",
        "awaiting-receipt",
        "delivered",
    ]


def test_failure_waits_then_fails_at_deadline() -> None:
    entry = advance_outbox(OutboxEntry(deadline=10_000), AttemptStarted(1))
    entry = advance_outbox(entry, AttemptFailed(2, "peer unreachable", retry_at=5_000))
    assert entry.state is S.RETRY_WAIT and entry.next_at == 5_000
    entry = advance_outbox(
        advance_outbox(entry, AttemptStarted(5_000)),
        AttemptFailed(5_001, "peer unreachable", retry_at=20_000),
    )
    assert entry.state is S.FAILED
    assert "deadline" in entry.history[-1][2] and "peer unreachable" in entry.last_error


def test_refusal_fails_at_once_with_the_reason() -> None:
    entry = advance_outbox(OutboxEntry(deadline=10_000), AttemptStarted(1))
    entry = advance_outbox(entry, AttemptFailed(2, "not a recipient", retry_at=None))
    assert entry.state is S.FAILED and entry.last_error == "not a recipient"


events = st.one_of(
    st.builds(AttemptStarted, st.integers(0, 100)),
    st.builds(lambda n, s: BlocksServed(n, min(s, 3), 3), st.integers(0, 100), st.integers(0, 3)),
    st.builds(ReceiptAccepted, st.integers(0, 100), st.just(b"r")),
    st.builds(
        AttemptFailed, st.integers(0, 100), st.just("x"), st.one_of(st.none(), st.integers(1, 200))
    ),
    st.builds(DeadlinePassed, st.integers(0, 100)),
)


@given(st.lists(events, max_size=30))
def test_any_event_sequence_keeps_invariants(sequence: list[object]) -> None:
    entry = OutboxEntry(deadline=150)
    for event in sequence:
        before = entry
        try:
            entry = advance_outbox(entry, event)  # type: ignore[arg-type]
        except LocalProtocolError:
            assert entry is before
            continue
        assert not before.state.terminal  # nothing leaves DELIVERED or FAILED
        assert (entry.state is S.DELIVERED) == (entry.receipt is not None)
        assert (entry.state is S.RETRY_WAIT) == (entry.next_at > 0)
        if entry.state is S.RETRY_WAIT:
            assert entry.next_at <= entry.deadline
        assert OutboxEntry.from_value(entry.to_value()) == entry


def test_inbox_table() -> None:
    entry = InboxEntry(
        root="b", sender="000.00.00.G22", sender_peer="p", document_id="d", received_at=1, seq=1
    )
    with pytest.raises(LocalProtocolError):
        advance_inbox(entry, Acked(2))
    entry = advance_inbox(entry, Stored(2, b"receipt"))
    assert entry.state is InboxState.STORED
    entry = advance_inbox(entry, Acked(3))
    assert entry.state is InboxState.ACKED
    with pytest.raises(LocalProtocolError):
        advance_inbox(entry, Stored(4, b"again"))
    assert InboxEntry.from_value(entry.to_value()) == entry


def test_retry_policy_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial=2, factor=3, maximum=1200, jitter=0.2)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        base = min(1200, 2 * 3 ** (n - 1))
        assert 0.8 * base <= delay <= 1.2 * base
    assert RetryPolicy(jitter=0).delay(1, rng) == 2
    assert [RetryPolicy().delay(3, random.Random(5)) for _ in range(2)] == [
        RetryPolicy().delay(3, random.Random(5))
    ] * 2


@pytest.mark.parametrize(
    "values",
    [
        {"factor": float("inf")},
        {"factor": float("nan")},
        {"factor": 1e4},
        {"factor": 0.5},
        {"maximum": float("inf")},
        {"maximum": 1e12},
        {"initial": 0},
        {"initial": 5, "maximum": 2},
        {"jitter": 1},
    ],
)
def test_retry_policy_refuses_values_whose_waits_are_no_durations(
    values: dict[str, float],
) -> None:
    with pytest.raises(InvalidValue):
        RetryPolicy(**values)


def test_retry_policy_at_its_bounds_gives_finite_waits() -> None:
    policy = RetryPolicy(initial=1, factor=1000, maximum=10 * 366 * 86400.0, jitter=0)
    assert policy.delay(10_000, random.Random(1)) == 10 * 366 * 86400.0
