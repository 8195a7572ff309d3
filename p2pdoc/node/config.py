"""Node configuration: frozen, keyword-only, nested by concern, a docstring per field."""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pdoc.delivery.retry import MAX_WAIT, RetryPolicy
from p2pdoc.errors import ConfigError
from p2pdoc.protocol.messages import MAX_INLINE_BYTES
from p2pdoc.protocol.session import SessionLimits

__all__ = ["DeliveryConfig", "EvidenceConfig", "NodeConfig", "ReceiveConfig"]

SESSION_PROTOCOL = "/p2pdoc/session/1.0.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    """How this node sends."""

    deadline: float = 7 * 24 * 3600.0
    """Seconds after ``send`` by which each recipient's receipt must have arrived; after it the
    recipient's delivery fails with the last error as reason. ``send`` may override it."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Back-off between attempts to one recipient."""
    max_concurrent_attempts: int = 512
    """Delivery attempts in progress at once, over all recipients."""
    offer_timeout: float = 120.0
    """Seconds an attempt may go without progress (blocks fetched, or the answer) before it
    is abandoned and retried."""
    dial_timeout: float = 10.0
    """Seconds allowed to connect and pass admission."""
    inline_limit: int = 64 << 10
    """Documents whose blocks total at most this many bytes travel inside the offer."""
    max_providers: int = 8
    """Other holders named in an offer so the recipient can fetch from them too."""

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.offer_timeout <= 0 or self.dial_timeout <= 0:
            raise ConfigError("delivery", "deadline and timeouts must be positive")
        if self.max_concurrent_attempts < 1:
            raise ConfigError("delivery.max_concurrent_attempts", "must be at least 1")
        if not 0 <= self.inline_limit <= MAX_INLINE_BYTES:
            raise ConfigError("delivery.inline_limit", f"must be within 0..{MAX_INLINE_BYTES}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveConfig:
    """How this node receives."""

    max_document_size: int = 4 << 30
    """Largest total of a document's files accepted (bytes)."""
    window: int = 16
    """Blocks asked for in one request."""
    requests_per_provider: int = 2
    """Block requests in flight to each provider."""
    max_concurrent_receives: int = 256
    """Documents being received at once; further offers are answered RETRY."""
    write_batch_bytes: int = 4 << 20
    """Fetched blocks are written to the store in batches of about this size."""
    auto_arrived_status: bool = True
    """Report status 01 (arrived) to the sender as soon as a document is stored."""
    abandon_after: float = 14 * 86400.0
    """A reception without progress for this long (seconds) is given up: its blocks are
    released and its inbox entry forgotten (a sender retries for at most its deadline, by
    default 7 days; a later offer starts afresh)."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.requests_per_provider < 1 or self.max_concurrent_receives < 1:
            raise ConfigError("receive", "window and concurrency limits must be at least 1")
        if not 0 < self.abandon_after <= MAX_WAIT:
            raise ConfigError("receive.abandon_after", f"must be seconds in (0, {MAX_WAIT}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceConfig:
    """How receipts and status reports are batch-signed."""

    max_delay: float = 0.002
    """Seconds a record may wait for others to share its signature."""
    max_batch: int = 512
    """Most records under one signature."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a :class:`~p2pdoc.node.Node` needs besides its collaborators."""

    session: SessionLimits = field(default_factory=SessionLimits)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    receive: ReceiveConfig = field(default_factory=ReceiveConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    protocol: str = SESSION_PROTOCOL
    """The libp2p protocol id sessions run under."""
    housekeeping_interval: float = 3600.0
    """Seconds between housekeeping rounds: abandoned receptions are given up
    (``receive.abandon_after``) and blocks no document keeps are deleted from the store."""

    def __post_init__(self) -> None:
        if not 0 < self.housekeeping_interval <= MAX_WAIT:
            raise ConfigError("housekeeping_interval", f"must be seconds in (0, {MAX_WAIT}]")
