"""Serving blocks to peers entitled to a document: its sender and its recipients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import NotFound, RemoteProtocolError
from p2pdoc.model.ids import AgencyCode
from p2pdoc.model.manifest import Manifest
from p2pdoc.node.context import NodeContext, doc_owner
from p2pdoc.protocol.messages import GetBlocks

__all__ = ["BlockServer"]

_CACHE = 256


class BlockServer:
    """Answers GetBlocks: only blocks of the named document, only to agencies it concerns.

    A peer learns nothing about documents it is not party to: for an unknown document or an
    agency outside its sender and recipients, the request is refused as a whole; blocks that
    do not belong to the document are reported missing.
    """

    def __init__(self, ctx: NodeContext, on_served: Callable[[Cid, AgencyCode, int], None]) -> None:
        self._ctx = ctx
        self._on_served = on_served
        self._documents: dict[Cid, tuple[frozenset[AgencyCode], frozenset[Cid]]] = {}
        self.blocks_sent = 0
        self.bytes_sent = 0

    async def _document(self, root: Cid) -> tuple[frozenset[AgencyCode], frozenset[Cid]]:
        known = self._documents.get(root)
        if known is None:
            try:
                record = await self._ctx.store.get_document(root)
            except NotFound:
                raise RemoteProtocolError(f"no document {root} here") from None
            envelope = Manifest.decode(record.manifest, expected=root).envelope
            parties = frozenset({envelope.sender.code, *envelope.recipient_codes})
            known = (parties, frozenset(await self._ctx.store.pinned(doc_owner(root))))
            if len(self._documents) >= _CACHE:
                self._documents.pop(next(iter(self._documents)))
            self._documents[root] = known
        return known

    def forget(self, root: Cid) -> None:
        self._documents.pop(root, None)

    async def serve(
        self, agency: AgencyCode, request: GetBlocks, send: Callable[[Cid, bytes], Awaitable[None]]
    ) -> Sequence[Cid]:
        parties, cids = await self._document(request.root)
        if agency not in parties:
            raise RemoteProtocolError(f"{agency} is not a party to document {request.root}")
        missing = []
        sent = 0
        try:
            for cid in request.cids:
                if cid not in cids:
                    missing.append(cid)
                    continue
                try:
                    data = await self._ctx.store.get_block(cid)
                except NotFound:
                    missing.append(cid)
                    continue
                await send(cid, data)
                sent += 1
                self.bytes_sent += len(data)
        finally:
            self.blocks_sent += sent
            if sent:
                self._on_served(request.root, agency, sent)
        return missing
