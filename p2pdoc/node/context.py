"""What the node's parts share: configuration, collaborators and the trust interfaces."""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import trio

from p2pdoc.codecs.cid import Cid
from p2pdoc.model.envelope import Envelope
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.model.manifest import Manifest
from p2pdoc.node.clock import Clock
from p2pdoc.node.config import NodeConfig
from p2pdoc.node.directory import PeerDirectory
from p2pdoc.store.base import Store
from p2pdoc.trust.sealing import OpenedSeal

__all__ = ["DocumentSigner", "KeyedLocks", "NodeContext", "NodeCredentials", "NodeTrust"]

_K = TypeVar("_K", bound=Hashable)


class NodeCredentials(Protocol):
    """This node's identity: agency code, peer ID, certificate chain and node key."""

    @property
    def agency(self) -> AgencyCode: ...

    @property
    def peer(self) -> PeerId: ...

    @property
    def chain(self) -> tuple[bytes, ...]: ...

    @property
    def x25519_public(self) -> bytes:
        """The key documents are sealed to for this node (its certificate states it)."""
        ...

    def sign(self, payload: bytes) -> bytes: ...

    def open_seal(self, manifest: Manifest) -> OpenedSeal:
        """Open a sealed document addressed to this node.

        Raises:
            NotARecipient: not sealed to this node's key.
            SealInvalid: the seal or its header fails authentication.
        """
        ...


class NodeTrust(Protocol):
    """The trust decisions the node delegates (implemented over :mod:`p2pdoc.trust`)."""

    def admit(
        self, chain: Sequence[bytes], peer: PeerId, payload: bytes, signature: bytes
    ) -> tuple[AgencyCode, object]:
        """Admission: see :class:`p2pdoc.protocol.admission.Gatekeeper`."""
        ...

    def verify_node(
        self, chain: Sequence[bytes], peer: PeerId, at: _dt.datetime
    ) -> tuple[AgencyCode, Callable[[bytes, bytes], None]]:
        """Evidence signers: see :class:`p2pdoc.delivery.evidence.NodeVerifier`."""
        ...

    def readmit(self, evidence: object) -> str | None:
        """Check an admitted peer again, now (``evidence`` as :meth:`admit` returned it):
        None if it would still be admitted, else why not (revoked since, expired...)."""
        ...

    def verify_document(
        self, root: Cid, signatures: bytes, manifest: Manifest, at: _dt.datetime
    ) -> None:
        """Check every signature of a received document and the classification policy.

        Raises:
            VerificationError: a signature, certificate or seal fails (a subclass says which).
            PolicyRefused: the policy forbids this document.
            DecodeError: the signature set is malformed.
        """
        ...

    def sealing_required(self, envelope: Envelope) -> bool:
        """Whether the policy requires documents like this one to be sealed."""
        ...

    def check_outgoing(self, manifest: Manifest) -> None:
        """Raises PolicyRefused if the policy forbids sending this document this way."""
        ...


class DocumentSigner(Protocol):
    """Produces a document's signature set (the officials' signatures over its root CID)."""

    def sign_document(self, root: Cid, at: _dt.datetime) -> bytes: ...


@dataclass(slots=True, kw_only=True)
class NodeContext:
    config: NodeConfig
    store: Store
    clock: Clock
    rng: random.Random
    credentials: NodeCredentials
    trust: NodeTrust
    directory: PeerDirectory

    @property
    def agency(self) -> AgencyCode:
        return self.credentials.agency

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, _dt.UTC)


def doc_owner(root: Cid) -> str:
    """The pin owner keeping a document's blocks."""
    return f"doc:{root}"


class KeyedLocks(Generic[_K]):
    """One lock per key (a document, say), forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[_K, trio.Lock] = {}

    @asynccontextmanager
    async def hold(self, key: _K) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the ``async with`` body (waiting for it first)."""
        lock = self._locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(key, None)
