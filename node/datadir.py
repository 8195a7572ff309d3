"""A node's data directory: creating it (``init``), enrolling it with a CA, its API token,
its lock, and copying it out and back (``backup`` / ``restore``).

Layout (every path is also a configuration key; these are the defaults)::

    p2pdoc-node.toml        the configuration
    api-token               the HTTP API bearer token (0600)
    node.sqlite             the store (SQLite, WAL)
    keys/                   node-identity.key, node-agreement.key (0600), node-request.csr,
                            node-chain.pem (once the CA issued it)
    signers/<role>.key      each official's key (0600), .csr request, .pem chain
    trust/root.pem          the root certificate(s)
    trust/crl/*.pem         revocation lists (each with its CA's chain)
    tmp/                    uploads in progress
    backups/                periodic backups
    daemon.lock, daemon.json  held / written by the running daemon

Goals: ``init`` generates every private key on this machine and writes only requests for the
CA; private keys and the token are mode 0600 in 0700 directories; a backup is a directory
holding a consistent copy of the store (SQLite online backup, while the daemon runs), the
keys, trust files and configuration, with a manifest of SHA-256 digests that ``restore``
checks before it writes anything. Non-goals: encrypting backups (keep them with the same care
as the keys; encrypted keys stay encrypted in them), remote storage.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import functools
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import trio

from p2pdoc.errors import ConfigError, KeyFileError, StorageFull, StoreError
from p2pdoc.model.ids import AgencyCode, PeerId
from p2pdoc.store.sqlite import SQLiteStore

from .config import CONFIG_FILE, Settings, load_settings, render_config, render_table
from .pki import (
    CRL_FILE,
    NODE_CHAIN_FILE,
    NODE_REQUEST_FILE,
    CaDirectory,
    create_identity_keys,
    create_signer_key,
    parse_request,
    write_pem_chain,
)

__all__ = [
    "BACKUP_MANIFEST",
    "InitOptions",
    "InitResult",
    "add_peer",
    "create_backup",
    "enrol",
    "init_data_dir",
    "lock_data_dir",
    "read_token",
    "restore_backup",
]

TOKEN_BYTES: Final = 32
LOCK_FILE: Final = "daemon.lock"
RUNTIME_FILE: Final = "daemon.json"
BACKUP_MANIFEST: Final = "backup.json"
BACKUP_STORE: Final = "store.sqlite"
_COPY_CHUNK: Final = 1 << 20


def read_token(path: Path) -> str:
    """The API token in ``path``.

    Raises:
        KeyFileError: missing, empty, or readable by group or others.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KeyFileError(str(path), f"cannot read the API token: {exc.strerror}") from None
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                str(path), f"is accessible by group or others (mode {mode:04o}): chmod 600"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    token = data.decode("ascii", "replace").strip()
    if not token:
        raise KeyFileError(str(path), "the API token file is empty")
    return token


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True, kw_only=True)
class InitOptions:
    """What ``p2pdoc-node init`` asks for."""

    data_dir: Path
    """The new data directory (created; must not hold a configuration yet)."""
    agency: AgencyCode
    """The agency this node serves."""
    name: str
    """The agency's name (certificate subject)."""
    listen_host: str = "127.0.0.1"
    """Where the libp2p host listens."""
    listen_port: int = 4001
    """Its TCP port."""
    api_port: int = 8480
    """The HTTP API's port (on 127.0.0.1)."""
    signer_roles: tuple[str, ...] = ("competent-signer",)
    """A key and request is generated for one official per role."""
    signer_name: str = ""
    """The officials' name in their requests (default: the agency's name)."""
    signer_position: str = ""
    """Their position (certificate title)."""
    passphrase: str | None = None
    """Encrypt the private keys under it."""
    passphrase_env: str = ""
    """Written into the configuration: where the daemon finds the passphrase."""
    passphrase_file: str = ""
    """Likewise, a file."""
    min_signatures: int | None = None
    """trust.min_signatures to write (None: the default)."""
    peers: Sequence[Mapping[str, object]] = ()
    """``[[peers]]`` rows to write."""


@dataclass(frozen=True, slots=True)
class InitResult:
    """What ``init`` made."""

    config: Path
    peer: PeerId
    requests: tuple[Path, ...]
    """The enrolment requests to take to the CA (node first, then each official)."""
    enrolled: bool
    """Certificates were issued at once (``--ca``)."""


def init_data_dir(
    options: InitOptions, *, ca: CaDirectory | None = None, now: _dt.datetime | None = None
) -> InitResult:
    """Create a data directory: keys, requests, API token and configuration; with ``ca``,
    also have it issue the certificates and install the root and revocation list.

    Raises:
        ConfigError: the directory already holds a configuration.
        KeyFileError: a key file exists or cannot be written.
        OutsideSubtree: ``ca`` may not certify this agency.
    """
    base = options.data_dir.absolute()
    config_path = base / CONFIG_FILE
    if config_path.exists():
        raise ConfigError(str(config_path), "already exists; choose an empty data directory")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("keys", "signers", "trust", "trust/crl", "tmp"):
        (base / sub).mkdir(mode=0o700, exist_ok=True)
    peer, _ = create_identity_keys(
        base / "keys", agency=options.agency, name=options.name, passphrase=options.passphrase
    )
    requests = [base / "keys" / NODE_REQUEST_FILE]
    signers = []
    for role in options.signer_roles:
        key_path = base / "signers" / f"{role}.key"
        create_signer_key(
            key_path,
            agency=options.agency,
            full_name=(options.signer_name or options.name)[:64],
            position=options.signer_position,
            organization=options.name[:64],
            passphrase=options.passphrase,
        )
        requests.append(key_path.with_suffix(".csr"))
        row: dict[str, object] = {
            "role": role,
            "key": f"signers/{role}.key",
            "chain": f"signers/{role}.pem",
        }
        if options.passphrase_env:
            row["passphrase_env"] = options.passphrase_env
        if options.passphrase_file:
            row["passphrase_file"] = options.passphrase_file
        signers.append(row)
    _write_secret(base / "api-token", secrets.token_urlsafe(TOKEN_BYTES))
    values: dict[str, dict[str, object]] = {
        "node": {"agency": str(options.agency), "name": options.name},
        "network": {"listen_host": options.listen_host, "listen_port": options.listen_port},
        "api": {"listen_port": options.api_port},
    }
    identity: dict[str, object] = {}
    if options.passphrase_env:
        identity["passphrase_env"] = options.passphrase_env
    if options.passphrase_file:
        identity["passphrase_file"] = options.passphrase_file
    if identity:
        values["identity"] = identity
    if options.min_signatures is not None:
        values["trust"] = {"min_signatures": options.min_signatures}
    text = render_config(values, signers=signers, peers=list(options.peers))
    tmp = config_path.with_name(f".{CONFIG_FILE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, config_path)
    enrolled = False
    if ca is not None:
        enrol(load_settings(config_path, env={}), ca, now=now)
        enrolled = True
    return InitResult(config_path, peer, tuple(requests), enrolled)


def enrol(settings: Settings, ca: CaDirectory, *, now: _dt.datetime | None = None) -> list[Path]:
    """Have ``ca`` certify this node and its officials from their requests, and install the
    root certificate and the CA's revocation list (single-operator setups and demos).

    Returns:
        The chain files written.

    Raises:
        KeyFileError, ConfigError: a request is missing or unusable.
        OutsideSubtree: the CA may not certify this agency.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    written = []
    key_dir = settings.resolve(settings.identity.key_dir)
    targets = [(key_dir / NODE_REQUEST_FILE, key_dir / NODE_CHAIN_FILE)]
    for signer in settings.signers:
        key = settings.resolve(signer.key)
        targets.append((key.with_suffix(".csr"), settings.resolve(signer.chain)))
    for request_path, chain_path in targets:
        try:
            data = request_path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                str(request_path), f"cannot read the request: {exc.strerror}"
            ) from None
        chain, _ = ca.issue(parse_request(data), now=now)
        write_pem_chain(chain_path, chain)
        written.append(chain_path)
    roots = [settings.resolve(p) for p in settings.trust.roots]
    roots[0].parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_pem_chain(roots[0], [ca.root])
    crl = ca.path / CRL_FILE
    lists = [settings.resolve(p) for p in settings.trust.revocation_lists]
    if crl.exists() and lists:
        target = lists[0]
        if target.suffix != ".pem":
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = target / f"{ca.path.name}.pem"
        shutil.copyfile(crl, target)
    return written


def add_peer(config_path: Path, *, agency: str, peer: str, addrs: Sequence[str]) -> None:
    """Append a ``[[peers]]`` table to a configuration file, after checking the result loads.

    Raises:
        ConfigError: the new peer (or the file) does not validate; the file is unchanged.
    """
    text = config_path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    text += "\n" + render_table("peers", {"agency": agency, "peer": peer, "addrs": list(addrs)})
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_settings(tmp, env={})
    except ConfigError:
        tmp.unlink()
        raise
    os.replace(tmp, config_path)


# -- the running daemon's lock ------------------------------------------------------------


@contextlib.contextmanager
def lock_data_dir(base: Path) -> Iterator[TextIO]:
    """Hold the data directory's lock (one daemon per directory) while inside.

    Raises:
        ConfigError: another process holds it.
    """
    path = base / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                str(path), "another p2pdoc-node is running on this data directory"
            ) from None
        yield handle
    finally:
        handle.close()


# -- backup and restore -------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _private(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077 == 0)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = 0o600 if _private(source) else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)
        dst.flush()
        os.fsync(dst.fileno())
    os.chmod(target, mode)


def _backup_files(settings: Settings) -> list[tuple[Path, str]]:
    """Files of the data directory a backup holds (besides the store): (source, name)."""
    out: list[tuple[Path, str]] = [(settings.path, CONFIG_FILE)]
    base = settings.base
    candidates = [settings.resolve(settings.api.token_file)]
    key_dir = settings.resolve(settings.identity.key_dir)
    if key_dir.is_dir():
        candidates += sorted(p for p in key_dir.iterdir() if p.is_file())
    for signer in settings.signers:
        for path in (settings.resolve(signer.key), settings.resolve(signer.chain)):
            candidates.append(path)
    for root in settings.trust.roots:
        candidates.append(settings.resolve(root))
    for entry in settings.trust.revocation_lists:
        path = settings.resolve(entry)
        if path.is_dir():
            candidates += sorted(p for p in path.iterdir() if p.is_file())
        else:
            candidates.append(path)
    seen = set()
    for path in candidates:
        if not path.exists() or path in seen:
            continue
        seen.add(path)
        try:
            name = path.relative_to(base).as_posix()
        except ValueError:
            raise ConfigError(
                str(path), "is outside the data directory; back it up separately"
            ) from None
        out.append((path, name))
    return out


async def create_backup(
    settings: Settings,
    target: Path,
    *,
    agency: str,
    peer: str,
    store: SQLiteStore | None = None,
) -> Path:
    """Write a backup of the node into the new directory ``target`` while it may be running.

    Args:
        store: the running daemon's open store (None: open the store file here, which works
            while another process, the daemon, uses it).

    The store is copied with SQLite's online backup API (a consistent snapshot after some
    commit); keys, chains, trust files, the token and the configuration are copied with
    their modes; ``backup.json`` lists every file with its SHA-256. File work runs in a
    worker thread.

    Raises:
        ConfigError: ``target`` exists, or a file lies outside the data directory.
        StorageFull: the disk or a quota filled up (nothing is left at ``target``).
        StoreError: the store copy failed, or a file could not be read or written
            (nothing is left at ``target``).
    """
    try:
        target, partial = await trio.to_thread.run_sync(_start_backup, target)
    except OSError as exc:
        raise _backup_failed(target, exc) from exc
    try:
        if store is not None:
            await store.backup(partial / BACKUP_STORE)
        else:
            own = await SQLiteStore.open(settings.resolve(settings.store.path))
            try:
                await own.backup(partial / BACKUP_STORE)
            finally:
                await own.aclose()
        await trio.to_thread.run_sync(_finish_backup, settings, target, partial, agency, peer)
    except BaseException as exc:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(functools.partial(shutil.rmtree, partial, True))
        if isinstance(exc, OSError):
            raise _backup_failed(target, exc) from exc
        raise
    return target


def _backup_failed(target: Path, exc: OSError) -> StoreError:
    problem = f"cannot write the backup {target}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(problem)
    return StoreError(problem)


def _start_backup(target: Path) -> tuple[Path, Path]:
    target = target.absolute()
    partial = target.with_name(f".{target.name}.partial")
    if target.exists():
        raise ConfigError(str(target), "already exists; name a new backup directory")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(mode=0o700, parents=True)
    return target, partial


def _finish_backup(settings: Settings, target: Path, partial: Path, agency: str, peer: str) -> None:
    os.chmod(partial / BACKUP_STORE, 0o600)
    files = {BACKUP_STORE: _sha256(partial / BACKUP_STORE)}
    for source, name in _backup_files(settings):
        _copy(source, partial / "files" / name)
        files[f"files/{name}"] = _sha256(partial / "files" / name)
    manifest = {
        "format": 1,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "agency": agency,
        "peer": peer,
        "store": settings.store.path,
        "files": files,
    }
    (partial / BACKUP_MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    os.replace(partial, target)


def read_backup_manifest(source: Path) -> dict[str, object]:
    """A backup's manifest, with every file's digest checked.

    Raises:
        ConfigError: no manifest, a file missing or not matching its digest.
    """
    try:
        value = json.loads((source / BACKUP_MANIFEST).read_text(encoding="utf-8"))
        files = value["files"]
        if not isinstance(files, dict):
            raise TypeError("its file list is not a JSON object")
    except (OSError, ValueError, LookupError, TypeError) as exc:
        raise ConfigError(str(source), f"not a p2pdoc-node backup: {exc}") from None
    for name, digest in files.items():
        path = source / name
        if ".." in Path(name).parts or not path.is_file():
            raise ConfigError(str(path), "is missing from the backup")
        if _sha256(path) != digest:
            raise ConfigError(str(path), "does not match its digest: the backup is damaged")
    return dict(value)


async def restore_backup(source: Path, data_dir: Path) -> Settings:
    """Restore a backup into the fresh data directory ``data_dir`` and check the store.

    The node started on ``data_dir`` then carries on with the same identity, store and
    configuration (including its ports: start it where the old one ran, or change them).

    Raises:
        ConfigError: the backup is damaged, or ``data_dir`` already holds a configuration.
        StoreCorrupt: the restored store fails its integrity check (``data_dir`` is left for
            inspection).
    """
    store_path, config_path = await trio.to_thread.run_sync(_restore_files, source, data_dir)
    store = await SQLiteStore.open(store_path)
    try:
        await store.check_integrity()
    finally:
        await store.aclose()
    return await trio.to_thread.run_sync(functools.partial(load_settings, config_path, env={}))


def _restore_files(source: Path, data_dir: Path) -> tuple[Path, Path]:
    data_dir = data_dir.absolute()
    manifest = read_backup_manifest(source)
    if (data_dir / CONFIG_FILE).exists():
        raise ConfigError(
            str(data_dir / CONFIG_FILE), "already exists; restore into a new directory"
        )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = manifest["files"]
    assert isinstance(files, dict)
    for name in files:
        if name.startswith("files/"):
            _copy(source / name, data_dir / name[len("files/") :])
    settings = load_settings(data_dir / CONFIG_FILE, env={})
    store_path = settings.resolve(settings.store.path)
    if store_path.exists():
        raise ConfigError(str(store_path), "already exists; restore into a new directory")
    _copy(source / BACKUP_STORE, store_path)
    os.chmod(store_path, 0o600)
    (data_dir / "tmp").mkdir(mode=0o700, exist_ok=True)
    return store_path, data_dir / CONFIG_FILE


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest backups (``backup-*`` directories) in ``directory``."""
    if not directory.is_dir():
        return []
    backups = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.startswith("backup-"))
    removed = backups[: max(0, len(backups) - keep)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
