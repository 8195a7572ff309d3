"""Where agencies' nodes are: agency code -> peer ID and addresses.

This is the static form (from configuration); a signed, versioned directory distributed
through the mesh replaces it without changing this interface.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2pdoc.errors import PeerUnreachable
from p2pdoc.model.ids import AgencyCode, PeerId

__all__ = ["PeerDirectory", "PeerRecord"]


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """An agency's node: its code, peer ID and dialable addresses (multiaddr text)."""

    agency: AgencyCode
    peer: PeerId
    addrs: tuple[str, ...] = ()


class PeerDirectory:
    """Agency code <-> node lookups."""

    def __init__(self, records: Iterable[PeerRecord] = ()) -> None:
        self._by_agency: dict[AgencyCode, PeerRecord] = {}
        self._by_peer: dict[PeerId, PeerRecord] = {}
        for record in records:
            self.add(record)

    def add(self, record: PeerRecord) -> None:
        """Add or replace the node of ``record.agency``."""
        old = self._by_agency.get(record.agency)
        if old is not None:
            self._by_peer.pop(old.peer, None)
        self._by_agency[record.agency] = record
        self._by_peer[record.peer] = record

    def lookup(self, agency: AgencyCode) -> PeerRecord:
        """The node of ``agency``.

        Raises:
            PeerUnreachable: the agency has no known node.
        """
        record = self._by_agency.get(agency)
        if record is None:
            raise PeerUnreachable(f"no node is known for agency {agency}")
        return record

    def by_peer(self, peer: PeerId) -> PeerRecord | None:
        return self._by_peer.get(peer)

    def records(self) -> list[PeerRecord]:
        return list(self._by_agency.values())

    def __len__(self) -> int:
        return len(self._by_agency)
