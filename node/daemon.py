"""The daemon: one node with its store, identity, trust, network, desk and HTTP API, as
configured by a :class:`~p2pdoc_node.config.Settings`.

Goals: everything here is wiring of library objects (``SQLiteStore``, ``NodeIdentity``,
``TrustStore``/``TrustGate``, ``PeerDirectory``, ``Libp2pNetwork``, ``Node``) plus the desk
and the API, all in one trio run; start-up refuses a node that cannot work (a certificate
that does not validate, a signer key that is not its certificate's) with a
:class:`~p2pdoc.errors.ConfigError` naming the file or key; stopping is orderly: the API
stops taking requests, the node stops, the store closes. While running, changed revocation
list files and peers in the configuration file are picked up, and periodic backups are
written if configured. Non-goals: daemonising (run it under systemd), reloading other keys.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdoc.errors import CertificateRejected, ConfigError, P2pdocError
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork
from p2pdoc.node.clock import Clock, TrioWallClock
from p2pdoc.node.directory import PeerDirectory, PeerRecord
from p2pdoc.node.node import Node
from p2pdoc.node.trustgate import (
    DocumentSigners,
    IdentityCredentials,
    SignaturePolicy,
    TrustGate,
)
from p2pdoc.store.sqlite import SQLiteConfig, SQLiteStore
from p2pdoc.trust.identity import NodeIdentity
from p2pdoc.trust.keys import load_signing_key, public_key_id
from p2pdoc.trust.validation import CertificatePurpose, TrustStore

from .activity import Activity
from .api import ApiLimits, build_app, serve_api
from .config import PeerSettings, Settings, load_settings
from .datadir import (
    RUNTIME_FILE,
    create_backup,
    lock_data_dir,
    prune_backups,
    read_token,
)
from .desk import Desk, DirectoryInfo
from .pki import (
    add_revocation_file,
    load_trust_store,
    read_certificates,
    read_passphrase,
    revocation_files,
)

__all__ = ["Daemon", "load_signers"]

log = logging.getLogger(__name__)

_MIN_RELOAD: Final = 0.5


def _passphrase(
    settings: Settings, env_name: str, file: str, what: str, environ: Mapping[str, str] | None
) -> str | None:
    return read_passphrase(
        env_name, settings.resolve(file) if file else None, environ=environ, what=what
    )


def load_signers(
    settings: Settings, trust: TrustStore, *, now: _dt.datetime, environ: Mapping[str, str] | None
) -> DocumentSigners | None:
    """The configured officials, each key checked against its certificate and each chain
    validated for document signing by this node's agency.

    Raises:
        KeyFileError: a key cannot be loaded.
        ConfigError: a chain does not validate, is not the key's, or is another agency's.
    """
    signers = []
    for i, entry in enumerate(settings.signers):
        key_name = f"signers[{i}]"
        key = load_signing_key(
            settings.resolve(entry.key),
            passphrase=_passphrase(
                settings, entry.passphrase_env, entry.passphrase_file, key_name, environ
            ),
        )
        chain_path = settings.resolve(entry.chain)
        chain = read_certificates(chain_path)
        if not chain:
            raise ConfigError(str(chain_path), "holds no certificate")
        try:
            verified = trust.validate(chain, purpose=CertificatePurpose.SIGNER, now=now)
        except CertificateRejected as exc:
            raise ConfigError(str(chain_path), f"does not validate: {exc}") from None
        leaf = verified.leaf
        if leaf.public_key is None or public_key_id(leaf.public_key) != key.key_id:
            raise ConfigError(str(chain_path), f"does not certify the key of {key_name}")
        if leaf.agency != settings.node.code:
            raise ConfigError(str(chain_path), f"certifies an official of {leaf.agency}")
        signers.append((entry.role, key, tuple(chain)))
    return DocumentSigners(tuple(signers)) if signers else None


def _record(peer: PeerSettings) -> PeerRecord:
    return PeerRecord(AgencyCode(peer.agency), PeerId.parse(peer.peer), tuple(peer.addrs))


class Daemon:
    """Runs one node as configured. Start with ``await nursery.start(daemon.run)``; the
    started value is the daemon, with :attr:`api_url`, :attr:`node` and :attr:`desk` set.

    Args:
        settings: the loaded configuration.
        environ: where passphrases named by ``*_env`` keys are read (default: the process
            environment).
        clock: the node's wall clock (default: trio's clock anchored to the system clock).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._environ = environ
        self.clock: Clock = clock or TrioWallClock()
        self._stop = trio.Event()
        self.node: Node | None = None
        self.desk: Desk | None = None
        self.store: SQLiteStore | None = None
        self.api_url = ""
        self.token = ""
        self.identity: NodeIdentity | None = None
        self._trust: TrustStore | None = None
        self._directory = PeerDirectory()
        self._seen_files: dict[Path, float] = {}
        self._config_mtime = settings.mtime

    def stop(self) -> None:
        """Ask :meth:`run` to stop (safe to call from a signal handler task)."""
        self._stop.set()

    def _now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, _dt.UTC)

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or cancellation).

        Raises:
            ConfigError, KeyFileError: the configuration, a key or a certificate is unusable.
            StoreError: the store cannot be opened.
        """
        settings = self.settings
        base = settings.base
        with lock_data_dir(base):
            self.token = read_token(settings.resolve(settings.api.token_file))
            self.identity = identity = NodeIdentity.load(
                settings.resolve(settings.identity.key_dir),
                passphrase=_passphrase(
                    settings,
                    settings.identity.passphrase_env,
                    settings.identity.passphrase_file,
                    "identity",
                    self._environ,
                ),
            )
            if identity.agency != settings.node.code:
                raise ConfigError(
                    "node.agency",
                    f"the node certificate is for {identity.agency}, not {settings.node.agency}",
                )
            now = self._now()
            self._trust = trust = load_trust_store(
                [settings.resolve(p) for p in settings.trust.roots],
                [settings.resolve(p) for p in settings.trust.revocation_lists],
                now=now,
                require_revocation_lists=settings.trust.require_revocation_lists,
            )
            self._remember_files()
            try:
                identity.validate(trust=trust, now=now)
            except CertificateRejected as exc:
                raise ConfigError(
                    settings.identity.key_dir, f"the node certificate does not validate: {exc}"
                ) from None
            signers = load_signers(settings, trust, now=now, environ=self._environ)
            gate = TrustGate(
                trust,
                self.clock,
                signatures=SignaturePolicy(
                    min_signatures=settings.trust.min_signatures,
                    required_roles=settings.trust.required_roles,
                ),
            )
            for peer in settings.peers:
                self._directory.add(_record(peer))
            network = Libp2pNetwork(
                Libp2pConfig(
                    listen_host=settings.network.listen_host,
                    listen_port=settings.network.listen_port,
                    dial_timeout=settings.network.dial_timeout,
                    negotiate_timeout=settings.network.negotiate_timeout,
                    stall_timeout=settings.network.stall_timeout,
                    max_connections=settings.network.max_connections,
                ),
                Ed25519PrivateKey.from_private_bytes(identity.signing_key.ed25519_private_bytes()),
            )
            store_config = SQLiteConfig(
                synchronous="FULL" if settings.store.synchronous == "FULL" else "NORMAL",
                busy_timeout=settings.store.busy_timeout,
                max_database_bytes=settings.store.max_database_bytes or None,
                readers=settings.store.readers,
            )
            self.store = store = await SQLiteStore.open(
                settings.resolve(settings.store.path), config=store_config
            )
            try:
                await self._serve(store, network, identity, gate, signers, task_status)
            finally:
                self.node = None
                with trio.CancelScope(shield=True):
                    await store.aclose()
                with contextlib.suppress(OSError):
                    (base / RUNTIME_FILE).unlink()

    async def _serve(
        self,
        store: SQLiteStore,
        network: Libp2pNetwork,
        identity: NodeIdentity,
        gate: TrustGate,
        signers: DocumentSigners | None,
        task_status: trio.TaskStatus[Daemon],
    ) -> None:
        settings = self.settings
        async with Node(
            settings.node_config(),
            store=store,
            network=network,
            credentials=IdentityCredentials(identity),
            trust=gate,
            directory=self._directory,
            clock=self.clock,
        ) as node:
            self.node = node
            desk = self.desk = Desk(
                node,
                store,
                trust=gate,
                signers=signers,
                clock=self.clock,
                agency_name=settings.node.name,
                directory=DirectoryInfo(
                    source=str(settings.path),
                    updated_ms=round(settings.mtime * 1000),
                    max_age=settings.directory.max_age,
                ),
                activity=Activity(self.clock.now_ms),
                certificate_expires=identity.certificate.not_after,
            )
            app = build_app(
                desk,
                token=self.token,
                limits=ApiLimits(
                    max_upload_bytes=settings.api.max_upload_bytes,
                    max_files=settings.api.max_files,
                    max_metadata_bytes=settings.api.max_metadata_bytes,
                ),
                spool_dir=settings.resolve(settings.api.spool_dir),
                metrics_need_token=settings.metrics.require_token,
            )
            api_stopped = trio.Event()
            async with trio.open_nursery() as nursery:
                await nursery.start(desk.run)

                async def api(*, task_status: trio.TaskStatus[str]) -> None:
                    try:
                        await serve_api(
                            app,
                            host=settings.api.listen_host,
                            port=settings.api.listen_port,
                            shutdown=self._stop.wait,
                            task_status=task_status,
                        )
                    finally:
                        api_stopped.set()

                self.api_url = await nursery.start(api)
                nursery.start_soon(self._refresh_loop)
                if settings.backup.interval > 0:
                    nursery.start_soon(self._backup_loop)
                self._write_runtime_file(identity)
                log.info(
                    "node %s (%s) peer %s on %s; API %s",
                    settings.node.agency, settings.node.name or "-", identity.peer_id,
                    ", ".join(node.listen_addrs), self.api_url,
                    extra={"event": "started", "api": self.api_url},
                )  # fmt: skip
                task_status.started(self)
                await self._stop.wait()
                with trio.move_on_after(5):
                    await api_stopped.wait()
                nursery.cancel_scope.cancel()
        log.info("node %s stopped", settings.node.agency, extra={"event": "stopped"})

    def _write_runtime_file(self, identity: NodeIdentity) -> None:
        node = self.node
        assert node is not None
        info = {
            "pid": os.getpid(),
            "agency": str(identity.agency),
            "peer": str(identity.peer_id),
            "api": self.api_url,
            "listen_addrs": node.listen_addrs,
        }
        path = self.settings.base / RUNTIME_FILE
        tmp = path.with_name(f".{RUNTIME_FILE}.tmp")
        tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
        os.replace(tmp, path)

    # -- reloading ----------------------------------------------------------------------

    def _remember_files(self) -> None:
        lists = [self.settings.resolve(p) for p in self.settings.trust.revocation_lists]
        for path in revocation_files(lists):
            self._seen_files[path] = path.stat().st_mtime

    async def _refresh_loop(self) -> None:
        interval = max(_MIN_RELOAD, self.settings.trust.reload_interval)
        while True:
            await trio.sleep(interval)
            self.refresh()

    def reload(self) -> None:
        """Re-read the configuration file's peers and every revocation list now, changed or
        not (what SIGHUP does); nothing happens before the node has started."""
        if self._trust is None:
            return
        log.info("reloading peers and revocation lists", extra={"event": "reload"})
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Pick up new or changed revocation list files and peers added to the configuration
        file (peers can be added or re-addressed, not removed, without a restart); with
        ``force``, whether their files changed or not."""
        settings = self.settings
        assert self._trust is not None
        lists = [settings.resolve(p) for p in settings.trust.revocation_lists]
        loaded = False
        for path in revocation_files(lists):
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            if self._seen_files.get(path) == mtime and not force:
                continue
            self._seen_files[path] = mtime
            try:
                if add_revocation_file(self._trust, path, now=self._now()):
                    log.info("revocation list %s loaded", path, extra={"event": "crl"})
                    loaded = True
            except P2pdocError as exc:
                log.warning("revocation list %s refused: %s", path, exc)
        if loaded and self.desk is not None:
            # Peers revoked by the new lists lose their sessions now, not at their next dial.
            self.desk.node.readmit_peers()
        try:
            mtime = settings.path.stat().st_mtime
        except OSError:
            return
        if mtime == self._config_mtime and not force:
            return
        self._config_mtime = mtime
        try:
            fresh = load_settings(settings.path, env=self._environ)
        except P2pdocError as exc:
            log.warning("configuration not reloaded: %s", exc)
            return
        for peer in fresh.peers:
            record = _record(peer)
            try:
                current = self._directory.lookup(record.agency)
            except P2pdocError:
                current = None
            if current != record:
                self._directory.add(record)
                log.info("peer %s at %s", peer.agency, ", ".join(peer.addrs))
        if self.desk is not None:
            self.desk.directory_info = DirectoryInfo(
                source=str(settings.path),
                updated_ms=round(mtime * 1000),
                max_age=settings.directory.max_age,
            )

    # -- backups ------------------------------------------------------------------------

    async def backup(self, target: Path) -> Path:
        """Write a backup of this running node into the new directory ``target``."""
        assert self.identity is not None
        return await create_backup(
            self.settings,
            target,
            agency=str(self.identity.agency),
            peer=str(self.identity.peer_id),
            store=self.store,
        )

    async def _backup_loop(self) -> None:
        settings = self.settings
        directory = settings.resolve(settings.backup.dir)
        while True:
            await trio.sleep(settings.backup.interval)
            stamp = self._now().strftime("%Y%m%dT%H%M%SZ")
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                path = await self.backup(directory / f"backup-{stamp}")
                prune_backups(directory, settings.backup.keep)
                log.info("backup written to %s", path, extra={"event": "backup"})
            except (P2pdocError, OSError) as exc:
                # A failed backup (disk full, directory gone) must not stop the node.
                log.warning("periodic backup failed: %s", exc, extra={"event": "backup-failed"})
