"""Simulated meshes: real nodes, a real PKI, an in-memory network and a virtual clock.

Every simulated result is a result of the production code: :class:`Mesh` only wires
:class:`~p2pdoc.node.Node` instances to a :class:`~p2pdoc.network.memory.MemoryRouter`,
:class:`~p2pdoc.store.memory.MemoryStore` instances and certificates issued by a national root
CA and per-province sub-CAs. Run it under ``trio.testing.MockClock`` for virtual time.

Example::

    mesh = Mesh(seed=1)
    gov = mesh.add_agency("000.00.00.G22", "Văn phòng Chính phủ")
    province = mesh.add_agency("000.00.00.H49", "UBND tỉnh Quảng Ninh")
    async with mesh.run():
        document = await mesh.node(gov).create_document(envelope, files, signer=gov.signers)
        ...

A node can be crashed (its tasks cancelled at once; its store kept, as a disk would be) and
restarted with :meth:`Mesh.crash` / :meth:`Mesh.restart`.

``Mesh(transport="libp2p")`` runs the same agencies over real libp2p hosts on 127.0.0.1
(then use trio's real clock).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from p2pdoc.model.ids import AgencyCode
from p2pdoc.network.base import Network
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork
from p2pdoc.network.memory import Faults, MemoryNetwork, MemoryRouter, memory_addr
from p2pdoc.node.clock import Clock, TrioWallClock
from p2pdoc.node.config import NodeConfig
from p2pdoc.node.directory import PeerDirectory, PeerRecord
from p2pdoc.node.node import Node
from p2pdoc.node.trustgate import DocumentSigners, IdentityCredentials, SignaturePolicy, TrustGate
from p2pdoc.store.base import Store
from p2pdoc.store.memory import MemoryStore
from p2pdoc.trust.ca import CertificateAuthority
from p2pdoc.trust.identity import NodeIdentity
from p2pdoc.trust.keys import AgreementKey, SigningKey
from p2pdoc.trust.revocation import RevocationList
from p2pdoc.trust.signatures import DocumentRole
from p2pdoc.trust.validation import TrustStore

__all__ = ["Agency", "Mesh"]

EPOCH_MS = 1_552_348_800_000
"""12 March 2019, 00:00 UTC: the day the national document exchange axis opened."""


@dataclass(slots=True)
class Agency:
    """One simulated agency: its identity, its officials' keys and its node's store."""

    code: AgencyCode
    name: str
    identity: NodeIdentity
    signers: DocumentSigners
    store: Store
    node: Node | None = None
    port: int = 0
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)


class Mesh:
    """A set of simulated agencies on one memory router.

    Args:
        seed: seeds the router and every node's retry jitter.
        faults: the router's initial fault model.
        config: every node's configuration.
        signature_roles: roles each document is signed with (one official each).
        epoch_ms: the wall time at virtual time zero.
        transport: ``"memory"`` (a :class:`MemoryRouter`) or ``"libp2p"`` (loopback TCP).
    """

    def __init__(
        self,
        *,
        transport: Literal["memory", "libp2p"] = "memory",
        seed: int = 0,
        faults: Faults | None = None,
        config: NodeConfig | None = None,
        signature_roles: tuple[str, ...] = (DocumentRole.COMPETENT_SIGNER,),
        epoch_ms: int = EPOCH_MS,
    ) -> None:
        self.seed = seed
        self.transport = transport
        self.router = MemoryRouter(seed, faults)
        self.config = config or NodeConfig()
        self.signature_roles = signature_roles
        self.clock: Clock = TrioWallClock(epoch_ms)
        self._now = _dt.datetime.fromtimestamp(epoch_ms / 1000, _dt.UTC)
        self.root_ca = CertificateAuthority.create_root(
            name="Ban Cơ yếu Chính phủ",
            key=self._key("root"),
            now=self._now,
        )
        self._sub_cas: dict[AgencyCode, CertificateAuthority] = {}
        self._revocations: dict[AgencyCode, RevocationList] = {}
        self._trust: dict[AgencyCode, TrustGate] = {}
        self.agencies: dict[AgencyCode, Agency] = {}
        self.directory = PeerDirectory()
        self._nursery: trio.Nursery | None = None

    def _seed_bytes(self, *names: object) -> bytes:
        return hashlib.sha256(repr((self.seed, *names)).encode()).digest()

    def _key(self, *names: object) -> SigningKey:
        """An Ed25519 key derived from the mesh seed, so runs with one seed are identical."""
        return SigningKey(Ed25519PrivateKey.from_private_bytes(self._seed_bytes("sign", *names)))

    def sub_ca(self, top: AgencyCode) -> CertificateAuthority:
        """The sub-CA of level-1 body ``top`` (created on first use)."""
        ca = self._sub_cas.get(top)
        if ca is None:
            key = self._key("ca", top)
            chain = self.root_ca.issue_sub_ca(
                agency=top, name=f"CA {top}", public_key=key.public_key, now=self._now
            )
            ca = self._sub_cas[top] = CertificateAuthority(key, chain)
        return ca

    def add_agency(
        self, code: str | AgencyCode, name: str = "", *, store: Store | None = None
    ) -> Agency:
        """Certify an agency's node and officials; its node starts with :meth:`run`."""
        code = AgencyCode(str(code))
        ca = self.sub_ca(code.root)
        node_key = self._key("node", code)
        agreement = AgreementKey(
            X25519PrivateKey.from_private_bytes(self._seed_bytes("agree", code))
        )
        node_public = node_key.public_key
        assert isinstance(node_public, Ed25519PublicKey)
        chain = ca.issue_node(
            agency=code,
            name=name or str(code),
            node_key=node_public,
            x25519_public=agreement.public_bytes,
            now=self._now,
        )
        identity = NodeIdentity(signing_key=node_key, agreement_key=agreement, chain=chain)
        signers = []
        for role in self.signature_roles:
            key = self._key("signer", code, role)
            chain = ca.issue_signer(
                agency=code, full_name=f"{role} {code}", public_key=key.public_key, now=self._now
            )
            signers.append((str(role), key, chain))
        agency = Agency(
            code,
            name or str(code),
            identity,
            DocumentSigners(tuple(signers)),
            store or MemoryStore(),
        )
        self.agencies[code] = agency
        if self.transport == "memory":
            self.directory.add(PeerRecord(code, identity.peer_id, (memory_addr(identity.peer_id),)))
        return agency

    def trust_store(self) -> TrustStore:
        """A trust store holding the root and every revocation list issued so far."""
        store = TrustStore([self.root_ca.certificate])
        for top, revocation in self._revocations.items():
            store.add_revocation_list(
                revocation, now=self._now, issuer_chain=self.sub_ca(top).chain
            )
        return store

    def revoke(self, agency: Agency | AgencyCode | str) -> None:
        """Revoke an agency's node certificate; every node learns it at once and closes
        its sessions with the revoked node."""
        record = self._agency(agency)
        top = record.code.root
        revocation = self.sub_ca(top).issue_revocation_list(
            revoked=[record.identity.certificate.serial],
            now=self._now,
            previous=self._revocations.get(top),
        )
        self._revocations[top] = revocation
        for gate in self._trust.values():
            gate.trust.add_revocation_list(
                revocation, now=self._now, issuer_chain=self.sub_ca(top).chain
            )
        for other in self.agencies.values():
            if other.node is not None:
                other.node.readmit_peers()

    def node(self, agency: Agency | AgencyCode | str) -> Node:
        record = self._agency(agency)
        if record.node is None:
            raise LookupError(f"{record.code} is not running")
        return record.node

    def _agency(self, agency: Agency | AgencyCode | str) -> Agency:
        if isinstance(agency, Agency):
            return agency
        return self.agencies[AgencyCode(str(agency))]

    @asynccontextmanager
    async def run(self) -> AsyncIterator[Mesh]:
        """Start every agency's node; stop them all on exit.

        On the memory network, the run is reproducible: keys, certificates, the router's
        faults and retry jitter all derive from the seed, and trio's scheduler (which shuffles
        tasks that wake together, on purpose) is seeded too.
        """
        seeded = _seeded_trio_scheduler(self.seed) if self.transport == "memory" else nullcontext()
        with seeded:  # around the nursery: its tasks end before the state is restored
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for agency in self.agencies.values():
                    await self.start(agency)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
                    self._nursery = None

    async def start(self, agency: Agency | AgencyCode | str) -> Node:
        """Start (or restart) an agency's node on its existing store."""
        record = self._agency(agency)
        assert self._nursery is not None, "start nodes inside Mesh.run()"
        if record.node is not None:
            raise RuntimeError(f"{record.code} is already running")
        await self._nursery.start(self._serve, record)
        return self.node(record)

    def _network(self, record: Agency) -> Network:
        if self.transport == "memory":
            return MemoryNetwork(self.router, record.identity.peer_id)
        key = Ed25519PrivateKey.from_private_bytes(
            record.identity.signing_key.ed25519_private_bytes()
        )
        return Libp2pNetwork(Libp2pConfig(listen_port=record.port), key)

    async def _serve(self, record: Agency, *, task_status: trio.TaskStatus[None]) -> None:
        network = self._network(record)
        trust = TrustGate(
            self.trust_store(),
            self.clock,
            signatures=SignaturePolicy(min_signatures=len(self.signature_roles)),
        )
        self._trust[record.code] = trust
        node = Node(
            self.config,
            store=record.store,
            network=network,
            credentials=IdentityCredentials(record.identity),
            trust=trust,
            directory=self.directory,
            clock=self.clock,
            rng=random.Random(f"{self.seed}:{record.code}"),
        )
        record.stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                record.scope = scope
                async with node:
                    record.node = node
                    if self.transport == "libp2p":
                        # Keep the port across restarts so peers' directories stay right.
                        addrs = tuple(node.listen_addrs)
                        parts = addrs[0].split("/") if addrs else []
                        record.port = int(parts[parts.index("tcp") + 1]) if "tcp" in parts else 0
                        self.directory.add(PeerRecord(record.code, record.identity.peer_id, addrs))
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            record.node = None
            record.scope = None
            record.stopped.set()

    async def crash(self, agency: Agency | AgencyCode | str) -> None:
        """Stop a node at once, as a killed process would; its store survives."""
        record = self._agency(agency)
        if record.scope is not None:
            record.scope.cancel()
            await record.stopped.wait()

    async def restart(self, agency: Agency | AgencyCode | str) -> Node:
        await self.crash(agency)
        return await self.start(agency)


@contextmanager
def _seeded_trio_scheduler(seed: int) -> Iterator[None]:
    """Make trio's choice of which ready task runs first reproducible, for the block.

    trio randomises the order of tasks that become ready together, to shake out ordering bugs,
    from a module-level ``random.Random`` that it otherwise exposes only to Hypothesis (which
    seeds it for the same reason). Seeding it makes a simulation with a given seed repeat
    exactly; with a trio that has no such generator, runs are reproducible only in
    distribution. The generator's state is restored afterwards, so that code running after
    the simulation in the same process keeps trio's own shuffling.
    """
    scheduler_random = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(scheduler_random, "_r", None)
    if not isinstance(generator, random.Random):
        yield
        return
    state = generator.getstate()
    generator.seed(f"p2pdoc-simulation:{seed}")
    try:
        yield
    finally:
        generator.setstate(state)
