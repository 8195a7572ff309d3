"""The daemon's configuration: one TOML file, documented defaults, environment overrides.

Goals: every setting has a default, a one-line meaning and an environment override, all
declared once below (the default file ``init`` writes and the reference table in
``docs/operator-guide.md`` are rendered from these declarations); a wrong value is refused at
load time with a :class:`~p2pdoc.errors.ConfigError` whose ``key`` is the dotted key
(``api.listen_port``, ``peers[1].peer``) and whose message says what is wrong; nothing is
half-loaded. Non-goals: reloading every key at run time (peers and revocation lists are
re-read while running; everything else needs a restart), writing TOML back with comments kept.

File: ``<data dir>/p2pdoc-node.toml``. Relative paths in it are relative to the file's own
directory. Environment: ``P2PDOC_<SECTION>_<KEY>`` (e.g. ``P2PDOC_API_LISTEN_PORT=9000``)
overrides the file; lists take JSON (``["a", "b"]``) or comma-separated text; booleans take
``true``/``false``/``1``/``0``/``yes``/``no``. The ``[[signers]]`` and ``[[peers]]`` tables
have no environment form.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final

from p2pdoc.delivery.retry import MAX_FACTOR, MAX_WAIT
from p2pdoc.errors import ConfigError, InvalidValue
from p2pdoc.model.ids import AgencyCode, PeerId

if typing.TYPE_CHECKING:
    from p2pdoc.node.config import NodeConfig

__all__ = [
    "CONFIG_FILE",
    "ENV_PREFIX",
    "SECTIONS",
    "ApiSettings",
    "BackupSettings",
    "DeliverySettings",
    "DirectorySettings",
    "IdentitySettings",
    "LogSettings",
    "MetricsSettings",
    "NetworkSettings",
    "NodeSettings",
    "PeerSettings",
    "ReceiveSettings",
    "Settings",
    "SignerSettings",
    "StoreSettings",
    "TrustSettings",
    "load_settings",
    "parse_settings",
    "reference_markdown",
    "render_config",
]

CONFIG_FILE: Final = "p2pdoc-node.toml"
ENV_PREFIX: Final = "P2PDOC_"
MAX_CONFIG_FILE: Final = 1 << 20
MAX_INLINE_LIMIT: Final = 256 << 10
"""Largest ``delivery.inline_limit`` (what an offer may carry inline)."""
MAX_SECONDS: Final = MAX_WAIT
"""Longest duration any key in seconds may take (ten years): wall-clock times computed from
it stay well inside the store's 64-bit integers."""
MAX_RETRY_FACTOR: Final = MAX_FACTOR
"""Largest ``delivery.retry_factor`` (the library raises it to powers up to 64)."""


class _Defaults:
    """The library's defaults for the keys mapped onto it (``DeliveryConfig``,
    ``RetryPolicy``, ``ReceiveConfig``), written out so that client commands need not import
    the node; a test checks that they match."""

    deadline = 7 * 24 * 3600.0
    offer_timeout = 120.0
    dial_timeout = 10.0
    max_concurrent_attempts = 512
    inline_limit = 64 << 10
    max_providers = 8
    initial = 2.0
    factor = 3.0
    maximum = 1200.0
    jitter = 0.2
    max_document_size = 4 << 30
    window = 16
    requests_per_provider = 2
    max_concurrent_receives = 256
    write_batch_bytes = 4 << 20
    auto_arrived_status = True
    abandon_after = 14 * 24 * 3600.0


_DELIVERY = _RECEIVE = _RETRY = _Defaults


def _doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """A settings field: its default and its documentation (rendered into the file and docs)."""
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"doc": text})


def _positive(section: str, name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{section}.{name}", "must be a positive number")


def _seconds(section: str, name: str, value: float) -> None:
    _positive(section, name, value)
    if value > MAX_SECONDS:
        raise ConfigError(f"{section}.{name}", f"must be at most {MAX_SECONDS} seconds")


def _at_least(section: str, name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{section}.{name}", f"must be at least {low}")


def _port(section: str, name: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{section}.{name}", "must be a TCP port 0..65535")


def _host(section: str, name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{section}.{name}", f"{value!r} is not an IP address") from None


def _path(section: str, name: str, value: str) -> None:
    if not value.strip():
        raise ConfigError(f"{section}.{name}", "must name a file or directory")


def _choice(section: str, name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{name}", f"must be one of {', '.join(choices)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """``[node]``: who this node is."""

    SECTION: ClassVar[str] = "node"
    agency: str = _doc("the agency code this node serves, e.g. 000.00.00.G22 (required)")
    name: str = _doc("the agency's name, shown in logs and the dashboard", "")

    def __post_init__(self) -> None:
        try:
            AgencyCode(self.agency)
        except InvalidValue as exc:
            raise ConfigError("node.agency", str(exc)) from None

    @property
    def code(self) -> AgencyCode:
        return AgencyCode(self.agency)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySettings:
    """``[identity]``: the node's keys."""

    SECTION: ClassVar[str] = "identity"
    key_dir: str = _doc(
        "directory of node-identity.key, node-agreement.key (mode 0600) and node-chain.pem",
        "keys",
    )
    passphrase_env: str = _doc(
        "environment variable holding the key passphrase (empty: keys are not encrypted)", ""
    )
    passphrase_file: str = _doc("file holding the key passphrase (first line)", "")

    def __post_init__(self) -> None:
        _path("identity", "key_dir", self.key_dir)
        if self.passphrase_env and self.passphrase_file:
            raise ConfigError("identity.passphrase_env", "set passphrase_env or passphrase_file")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustSettings:
    """``[trust]``: roots, revocation lists and what a received document must carry."""

    SECTION: ClassVar[str] = "trust"
    roots: tuple[str, ...] = _doc(
        "PEM files of the trusted root CA certificates", ["trust/root.pem"]
    )
    revocation_lists: tuple[str, ...] = _doc(
        "PEM files or directories (every *.pem inside) of revocation lists, each with its "
        "CA's chain; re-read when they change",
        ["trust/crl"],
    )
    min_signatures: int = _doc("fewest official signatures a received document must carry", 1)
    required_roles: tuple[str, ...] = _doc(
        "signature roles a received document must each carry (e.g. competent-signer)", []
    )
    require_revocation_lists: bool = _doc(
        "refuse chains whose CA has no revocation list cached here", False
    )
    reload_interval: float = _doc(
        "seconds between checks for changed revocation lists and peers", 30.0
    )

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigError("trust.roots", "at least one root certificate is needed")
        for n, root in enumerate(self.roots):
            _path("trust", f"roots[{n}]", root)
        _at_least("trust", "min_signatures", self.min_signatures, 0)
        _positive("trust", "reload_interval", self.reload_interval)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSettings:
    """``[network]``: the libp2p host (TCP + Noise + Yamux)."""

    SECTION: ClassVar[str] = "network"
    listen_host: str = _doc("IP address the libp2p host listens on", "127.0.0.1")
    listen_port: int = _doc("TCP port of the libp2p host (0: any free port)", 4001)
    dial_timeout: float = _doc("seconds to connect to a peer", 10.0)
    negotiate_timeout: float = _doc("seconds a peer has to accept a stream", 10.0)
    stall_timeout: float = _doc("seconds a write may stall before the connection is dropped", 30.0)
    max_connections: int = _doc("most connections kept open", 300)

    def __post_init__(self) -> None:
        _host("network", "listen_host", self.listen_host)
        _port("network", "listen_port", self.listen_port)
        for name in ("dial_timeout", "negotiate_timeout", "stall_timeout"):
            _positive("network", name, getattr(self, name))
        _at_least("network", "max_connections", self.max_connections, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """``[api]``: the local HTTP API for document software."""

    SECTION: ClassVar[str] = "api"
    listen_host: str = _doc("IP address of the HTTP API (keep it on loopback)", "127.0.0.1")
    listen_port: int = _doc("TCP port of the HTTP API (0: any free port)", 8480)
    token_file: str = _doc("file holding the API bearer token (mode 0600)", "api-token")
    max_upload_bytes: int = _doc("largest request body accepted (bytes)", 512 << 20)
    max_files: int = _doc("most files in one submitted document", 100)
    max_metadata_bytes: int = _doc("largest metadata JSON accepted (bytes)", 256 << 10)
    spool_dir: str = _doc("where uploads are written while they arrive", "tmp")

    def __post_init__(self) -> None:
        _host("api", "listen_host", self.listen_host)
        _port("api", "listen_port", self.listen_port)
        _at_least("api", "max_upload_bytes", self.max_upload_bytes, 1024)
        _at_least("api", "max_files", self.max_files, 1)
        _at_least("api", "max_metadata_bytes", self.max_metadata_bytes, 1024)
        _path("api", "token_file", self.token_file)
        _path("api", "spool_dir", self.spool_dir)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """``[store]``: the SQLite store."""

    SECTION: ClassVar[str] = "store"
    path: str = _doc("the SQLite database file", "node.sqlite")
    synchronous: str = _doc(
        "FULL: acknowledged writes survive power loss; NORMAL: they survive process crashes",
        "FULL",
    )
    busy_timeout: float = _doc("seconds to wait for a lock held by another connection", 5.0)
    max_database_bytes: int = _doc("quota on the database file in bytes (0: none)", 0)
    readers: int = _doc("read connections (parallel reads)", 4)

    def __post_init__(self) -> None:
        _path("store", "path", self.path)
        _choice("store", "synchronous", self.synchronous, ("FULL", "NORMAL"))
        _at_least("store", "max_database_bytes", self.max_database_bytes, 0)
        if not 1 <= self.readers <= 64:
            raise ConfigError("store.readers", "must be 1 .. 64")
        if not (self.busy_timeout >= 0 and math.isfinite(self.busy_timeout)):
            raise ConfigError("store.busy_timeout", "must be >= 0 seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySettings:
    """``[delivery]``: how documents are sent."""

    SECTION: ClassVar[str] = "delivery"
    deadline: float = _doc(
        "seconds for each recipient's receipt to arrive before its delivery fails",
        _DELIVERY.deadline,
    )
    offer_timeout: float = _doc(
        "seconds an attempt may go without progress before it is retried", _DELIVERY.offer_timeout
    )
    dial_timeout: float = _doc(
        "seconds to connect to a recipient and pass admission", _DELIVERY.dial_timeout
    )
    max_concurrent_attempts: int = _doc(
        "delivery attempts in progress at once", _DELIVERY.max_concurrent_attempts
    )
    inline_limit: int = _doc(
        "documents of at most this many bytes travel inside the offer", _DELIVERY.inline_limit
    )
    max_providers: int = _doc(
        "other holders named in an offer for the recipient to fetch from",
        _DELIVERY.max_providers,
    )
    retry_initial: float = _doc("seconds before the first retry", _RETRY.initial)
    retry_factor: float = _doc("growth of the wait from one retry to the next", _RETRY.factor)
    retry_maximum: float = _doc("longest wait between attempts (seconds)", _RETRY.maximum)
    retry_jitter: float = _doc("relative spread of each wait (0.2: +-20 %)", _RETRY.jitter)

    def __post_init__(self) -> None:
        for name in ("deadline", "offer_timeout", "dial_timeout", "retry_initial"):
            _seconds("delivery", name, getattr(self, name))
        _seconds("delivery", "retry_maximum", self.retry_maximum)
        if not 1 <= self.retry_factor <= MAX_RETRY_FACTOR:
            raise ConfigError("delivery.retry_factor", f"must be 1..{MAX_RETRY_FACTOR:g}")
        _at_least("delivery", "max_concurrent_attempts", self.max_concurrent_attempts, 1)
        _at_least("delivery", "max_providers", self.max_providers, 0)
        if not 0 <= self.inline_limit <= MAX_INLINE_LIMIT:
            raise ConfigError("delivery.inline_limit", f"must be 0..{MAX_INLINE_LIMIT}")
        if self.retry_maximum < self.retry_initial:
            raise ConfigError("delivery.retry_maximum", "must be at least retry_initial")
        if not 0 <= self.retry_jitter < 1:
            raise ConfigError("delivery.retry_jitter", "must be in [0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveSettings:
    """``[receive]``: how documents are received."""

    SECTION: ClassVar[str] = "receive"
    max_document_size: int = _doc(
        "largest total of a document's files accepted (bytes)", _RECEIVE.max_document_size
    )
    window: int = _doc("blocks asked for in one request", _RECEIVE.window)
    requests_per_provider: int = _doc(
        "block requests in flight to each holder", _RECEIVE.requests_per_provider
    )
    max_concurrent_receives: int = _doc(
        "documents received at once; more offers are asked to retry",
        _RECEIVE.max_concurrent_receives,
    )
    write_batch_bytes: int = _doc(
        "fetched blocks are written in batches of about this size", _RECEIVE.write_batch_bytes
    )
    auto_arrived_status: bool = _doc(
        "report status 01 (arrived) as soon as a document is stored",
        _RECEIVE.auto_arrived_status,
    )
    abandon_after: float = _doc(
        "seconds without progress after which a reception is given up and its blocks released",
        _RECEIVE.abandon_after,
    )

    def __post_init__(self) -> None:
        for name in ("window", "requests_per_provider", "max_concurrent_receives"):
            _at_least("receive", name, getattr(self, name), 1)
        _seconds("receive", "abandon_after", self.abandon_after)
        _at_least("receive", "max_document_size", self.max_document_size, 0)
        _at_least("receive", "write_batch_bytes", self.write_batch_bytes, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectorySettings:
    """``[directory]``: where other agencies' nodes are (the ``[[peers]]`` list for now)."""

    SECTION: ClassVar[str] = "directory"
    max_age: float = _doc(
        "seconds after which the peer list (the config file's age) is reported stale",
        7 * 24 * 3600.0,
    )

    def __post_init__(self) -> None:
        _positive("directory", "max_age", self.max_age)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """``[log]``: what the daemon writes to its log."""

    SECTION: ClassVar[str] = "log"
    level: str = _doc("debug, info, warning or error", "info")
    format: str = _doc("text (one line per event) or json (one JSON object per line)", "text")
    file: str = _doc("log file (empty: standard error, e.g. for journald)", "")

    def __post_init__(self) -> None:
        _choice("log", "level", self.level, ("debug", "info", "warning", "error"))
        _choice("log", "format", self.format, ("text", "json"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSettings:
    """``[metrics]``: the Prometheus endpoint ``/metrics`` on the API port."""

    SECTION: ClassVar[str] = "metrics"
    require_token: bool = _doc("whether /metrics needs the API bearer token", True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupSettings:
    """``[backup]``: periodic online backups by the running daemon."""

    SECTION: ClassVar[str] = "backup"
    dir: str = _doc("where periodic backups are written", "backups")
    interval: float = _doc("seconds between periodic backups (0: none)", 0.0)
    keep: int = _doc("periodic backups kept (older ones are deleted)", 7)

    def __post_init__(self) -> None:
        _path("backup", "dir", self.dir)
        if not (self.interval >= 0 and math.isfinite(self.interval)):
            raise ConfigError("backup.interval", "must be >= 0 seconds")
        _at_least("backup", "keep", self.keep, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignerSettings:
    """``[[signers]]``: an official whose key signs the documents this node submits."""

    role: str = _doc("signature role, e.g. competent-signer, organisation")
    key: str = _doc("the official's private key file (PKCS#8 PEM, mode 0600)")
    chain: str = _doc("the official's certificate chain (PEM, leaf first)")
    passphrase_env: str = _doc("environment variable holding the key passphrase", "")
    passphrase_file: str = _doc("file holding the key passphrase", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSettings:
    """``[[peers]]``: another agency's node, until a signed directory replaces this list."""

    agency: str = _doc("the agency code")
    peer: str = _doc("its node's peer ID (12D3Koo...)")
    addrs: tuple[str, ...] = _doc("its dialable addresses, /ip4/<address>/tcp/<port>")


SECTIONS: Final[tuple[type[Any], ...]] = (
    NodeSettings,
    IdentitySettings,
    TrustSettings,
    NetworkSettings,
    ApiSettings,
    StoreSettings,
    DeliverySettings,
    ReceiveSettings,
    DirectorySettings,
    LogSettings,
    MetricsSettings,
    BackupSettings,
)
_TABLE_ARRAYS: Final[dict[str, type[Any]]] = {"signers": SignerSettings, "peers": PeerSettings}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """A loaded, validated configuration.

    Attributes:
        path: the configuration file.
        mtime: its modification time when loaded (seconds since the epoch): the age of the
            peer list it holds.
    """

    path: Path
    mtime: float
    node: NodeSettings
    identity: IdentitySettings
    trust: TrustSettings
    network: NetworkSettings
    api: ApiSettings
    store: StoreSettings
    delivery: DeliverySettings
    receive: ReceiveSettings
    directory: DirectorySettings
    log: LogSettings
    metrics: MetricsSettings
    backup: BackupSettings
    signers: tuple[SignerSettings, ...] = ()
    peers: tuple[PeerSettings, ...] = ()

    def node_config(self) -> NodeConfig:
        """The library configuration built from ``[delivery]`` and ``[receive]``.

        Raises:
            ConfigError: a value the library refuses (``key`` names it).
        """
        return _library_config(self.delivery, self.receive)

    @property
    def base(self) -> Path:
        """The directory relative paths are resolved against (the file's directory)."""
        return self.path.parent

    def resolve(self, path: str) -> Path:
        """``path`` made absolute against :attr:`base` (``~`` expanded)."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base / candidate


# -- parsing ------------------------------------------------------------------------------


def _type_name(kind: object) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "text"
    return "a list of text"


def _check_type(key: str, kind: object, value: object) -> object:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)  # type: ignore[arg-type]
    elif kind is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)  # type: ignore[arg-type]
    if not ok:
        raise ConfigError(key, f"must be {_type_name(kind)}, not {_describe(value)}")
    return value


def _describe(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "text"}
    for kind, name in names.items():
        if type(value) is kind:
            return f"{name} ({json.dumps(value, ensure_ascii=False, default=str)[:40]})"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _from_env(key: str, kind: object, text: str) -> object:
    text = text.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if text.startswith("["):
            value = json.loads(text)
            if not isinstance(value, list):
                raise ValueError(text)
            return value
        return [part.strip() for part in text.split(",") if part.strip()]
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(
            key, f"environment value {text[:40]!r} is not {_type_name(kind)}"
        ) from None


def _field_kinds(cls: type[Any]) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if typing.get_origin(kind) is tuple or isinstance(kind, types.GenericAlias):
            kind = tuple
        out[item.name] = kind
    return out


def env_name(section: str, name: str) -> str:
    """The environment variable overriding ``section.name``."""
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def _build(cls: type[Any], prefix: str, table: object, env: Mapping[str, str] | None) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(prefix, f"must be a table, not {_describe(table)}")
    kinds = _field_kinds(cls)
    for name in table:
        if name not in kinds:
            raise ConfigError(f"{prefix}.{name}", "unknown key")
    values: dict[str, object] = {}
    for item in dataclasses.fields(cls):
        key = f"{prefix}.{item.name}"
        kind = kinds[item.name]
        raw: object = table.get(item.name, dataclasses.MISSING)
        if env is not None:
            override = env.get(env_name(prefix, item.name))
            if override is not None:
                raw = _from_env(key, kind, override)
        if raw is dataclasses.MISSING:
            if item.default is dataclasses.MISSING:
                raise ConfigError(key, "is required")
            continue
        values[item.name] = _check_type(key, kind, raw)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except InvalidValue as exc:
        raise ConfigError(prefix, str(exc)) from None


def _check_signer(index: int, signer: SignerSettings) -> None:
    key = f"signers[{index}]"
    for name in ("role", "key", "chain"):
        if not getattr(signer, name):
            raise ConfigError(f"{key}.{name}", "must not be empty")
    if signer.passphrase_env and signer.passphrase_file:
        raise ConfigError(f"{key}.passphrase_env", "set passphrase_env or passphrase_file")


def check_tcp_addr(key: str, text: str, peer: PeerId | None = None) -> None:
    """A dialable ``/ip4|ip6/<address>/tcp/<port>[/p2p/<id>]`` multiaddr, or ConfigError."""
    parts = text.split("/")
    problem = "must look like /ip4/<address>/tcp/<port>"
    if parts[0] != "" or len(parts) not in (5, 7) or parts[3] != "tcp":
        raise ConfigError(key, f"{text!r} {problem}")
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        raise ConfigError(key, f"{parts[2]!r} is not an IP address") from None
    if (parts[1], ip.version) not in (("ip4", 4), ("ip6", 6)):
        raise ConfigError(key, f"{text!r} {problem}")
    if not parts[4].isascii() or not parts[4].isdigit() or not 0 < int(parts[4]) <= 65535:
        raise ConfigError(key, f"{text!r}: the TCP port must be 1..65535")
    if len(parts) == 7:
        try:
            named = PeerId.parse(parts[6]) if parts[5] == "p2p" else None
        except InvalidValue:
            named = None
        if named is None or (peer is not None and named != peer):
            raise ConfigError(key, f"{text!r}: only /p2p/<this peer's ID> may follow the port")


def _check_peer(index: int, peer: PeerSettings) -> None:
    key = f"peers[{index}]"
    try:
        AgencyCode(peer.agency)
    except InvalidValue as exc:
        raise ConfigError(f"{key}.agency", str(exc)) from None
    try:
        peer_id = PeerId.parse(peer.peer)
    except InvalidValue as exc:
        raise ConfigError(f"{key}.peer", str(exc)) from None
    if not peer.addrs:
        raise ConfigError(f"{key}.addrs", "at least one address is needed")
    for n, addr in enumerate(peer.addrs):
        check_tcp_addr(f"{key}.addrs[{n}]", addr, peer_id)


def _library_config(delivery: DeliverySettings, receive: ReceiveSettings) -> NodeConfig:
    from p2pdoc.delivery.retry import RetryPolicy
    from p2pdoc.node.config import DeliveryConfig, NodeConfig, ReceiveConfig

    try:
        retry = RetryPolicy(
            initial=delivery.retry_initial,
            factor=delivery.retry_factor,
            maximum=delivery.retry_maximum,
            jitter=delivery.retry_jitter,
        )
    except InvalidValue as exc:
        raise ConfigError("delivery.retry_initial", str(exc)) from None
    return NodeConfig(
        delivery=DeliveryConfig(
            deadline=delivery.deadline,
            retry=retry,
            max_concurrent_attempts=delivery.max_concurrent_attempts,
            offer_timeout=delivery.offer_timeout,
            dial_timeout=delivery.dial_timeout,
            inline_limit=delivery.inline_limit,
            max_providers=delivery.max_providers,
        ),
        receive=ReceiveConfig(
            max_document_size=receive.max_document_size,
            window=receive.window,
            requests_per_provider=receive.requests_per_provider,
            max_concurrent_receives=receive.max_concurrent_receives,
            write_batch_bytes=receive.write_batch_bytes,
            auto_arrived_status=receive.auto_arrived_status,
            abandon_after=receive.abandon_after,
        ),
    )


def parse_settings(
    document: Mapping[str, object],
    *,
    path: Path,
    mtime: float = 0.0,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Validate a parsed TOML document.

    Args:
        path: the file it came from (relative paths resolve against its directory).
        env: environment overrides (``None``: none).

    Raises:
        ConfigError: ``key`` names the first wrong key (unknown section or key, wrong type,
            missing required key, value out of range).
    """
    known = {cls.SECTION for cls in SECTIONS} | set(_TABLE_ARRAYS)
    for name in document:
        if name not in known:
            raise ConfigError(str(name), "unknown section")
    sections: dict[str, Any] = {}
    for cls in SECTIONS:
        sections[cls.SECTION] = _build(cls, cls.SECTION, document.get(cls.SECTION, {}), env)
    arrays: dict[str, tuple[Any, ...]] = {}
    for name, cls in _TABLE_ARRAYS.items():
        raw = document.get(name, [])
        if not isinstance(raw, list):
            raise ConfigError(name, f"must be an array of tables ([[{name}]])")
        arrays[name] = tuple(_build(cls, f"{name}[{i}]", item, None) for i, item in enumerate(raw))
    for i, signer in enumerate(arrays["signers"]):
        _check_signer(i, signer)
    seen: dict[str, int] = {}
    for i, peer in enumerate(arrays["peers"]):
        _check_peer(i, peer)
        if peer.agency in seen:
            raise ConfigError(f"peers[{i}].agency", f"{peer.agency} is listed twice")
        seen[peer.agency] = i
    roles = [s.role for s in arrays["signers"]]
    if len(set(roles)) != len(roles):
        raise ConfigError("signers", "a role is listed twice")
    return Settings(
        path=path,
        mtime=mtime,
        signers=arrays["signers"],
        peers=arrays["peers"],
        **sections,
    )


def load_settings(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate a configuration file; ``env`` defaults to ``os.environ``.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML (``key`` is the file's path),
            or a key is wrong (``key`` names it).
    """
    target = Path(path).absolute()
    try:
        with open(target, "rb") as handle:
            data = handle.read(MAX_CONFIG_FILE + 1)
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError as exc:
        raise ConfigError(str(target), f"cannot read the configuration: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_FILE:
        raise ConfigError(str(target), f"is larger than {MAX_CONFIG_FILE} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(target), f"not valid TOML: {exc}") from None
    return parse_settings(
        document, path=target, mtime=mtime, env=os.environ if env is None else env
    )


# -- rendering ----------------------------------------------------------------------------


def toml_value(value: object) -> str:
    """A TOML literal for a str, int, float, bool or sequence of str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise InvalidValue(f"cannot write {type(value).__name__} as TOML")


def _wrap(text: str, width: int = 96) -> list[str]:
    words = text.split()
    lines: list[str] = []
    line = "#"
    for word in words:
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


def render_config(
    values: Mapping[str, Mapping[str, object]],
    *,
    signers: Sequence[Mapping[str, object]] = (),
    peers: Sequence[Mapping[str, object]] = (),
) -> str:
    """The text of a configuration file: every key of every section with its meaning; keys
    given in ``values`` are set, the others are shown commented out at their default."""
    out = [
        "# p2pdoc-node configuration. Every key is shown with its meaning; commented keys are",
        "# at their default. Relative paths are relative to this file's directory.",
        f"# Environment overrides: {ENV_PREFIX}<SECTION>_<KEY>, e.g. "
        f"{env_name('api', 'listen_port')}=9000.",
        "",
    ]
    for cls in SECTIONS:
        given = values.get(cls.SECTION, {})
        out += _wrap(str(cls.__doc__).replace("``", ""))
        out.append(f"[{cls.SECTION}]")
        for item in dataclasses.fields(cls):
            out += _wrap(item.metadata["doc"])
            if item.name in given:
                out.append(f"{item.name} = {toml_value(given[item.name])}")
            elif item.default is dataclasses.MISSING:
                out.append(f"# {item.name} = (required)")
            else:
                out.append(f"# {item.name} = {toml_value(item.default)}")
        out.append("")
    for name, cls, rows in (
        ("signers", SignerSettings, signers),
        ("peers", PeerSettings, peers),
    ):
        out += _wrap(str(cls.__doc__).replace("``", ""))
        out += [f"#   {item.name}: {item.metadata['doc']}" for item in dataclasses.fields(cls)]
        for row in rows:
            out.append(f"[[{name}]]")
            out += [f"{key} = {toml_value(value)}" for key, value in row.items()]
        out.append("")
    return "\n".join(out)


def render_table(name: str, row: Mapping[str, object]) -> str:
    """One ``[[name]]`` table (appended to a configuration file, e.g. a new peer)."""
    lines = [f"[[{name}]]"] + [f"{key} = {toml_value(value)}" for key, value in row.items()]
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The configuration reference as Markdown tables (kept in docs/operator-guide.md)."""
    out: list[str] = []
    for cls in SECTIONS:
        out += [
            f"### `[{cls.SECTION}]`",
            "",
            "| key | default | environment | meaning |",
            "|---|---|---|---|",
        ]
        for item in dataclasses.fields(cls):
            default = (
                "required"
                if item.default is dataclasses.MISSING
                else f"`{toml_value(item.default)}`"
            )
            out.append(
                f"| `{item.name}` | {default} | `{env_name(cls.SECTION, item.name)}` | "
                f"{item.metadata['doc']} |"
            )
        out.append("")
    for name, cls in _TABLE_ARRAYS.items():
        out += [
            f"### `[[{name}]]`",
            "",
            "| key | default | meaning |",
            "|---|---|---|",
        ]
        for item in dataclasses.fields(cls):
            default = (
                "required"
                if item.default is dataclasses.MISSING
                else f"`{toml_value(item.default)}`"
            )
            out.append(f"| `{item.name}` | {default} | {item.metadata['doc']} |")
        out.append("")
    return "\n".join(out)
