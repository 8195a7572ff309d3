"""Data directories, CAs and running daemons for the daemon's tests (all on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio
from p2pdoc_node.client import ApiClient, ApiResponse
from p2pdoc_node.config import CONFIG_FILE, Settings, load_settings
from p2pdoc_node.daemon import Daemon
from p2pdoc_node.datadir import InitOptions, InitResult, add_peer, init_data_dir
from p2pdoc_node.demo import free_ports
from p2pdoc_node.pki import CaDirectory

from p2pdoc.model.ids import AgencyCode

GOV = "000.00.00.G22"
QUANG_NINH = "000.00.00.H49"
HA_NAM = "000.00.00.H35"
NOW = dt.datetime.now(dt.UTC)

T = TypeVar("T")


def make_ca(path: Path) -> CaDirectory:
    return CaDirectory.create_root(path, name="Test root CA", now=NOW)


def make_nodes(
    base: Path, ca: CaDirectory, codes: list[str], *, api_port: int = 0, **options: Any
) -> dict[str, InitResult]:
    """Initialise and enrol a data directory per agency under ``base``, each listing the
    others as peers (libp2p on fixed free ports, the API on ``api_port``)."""
    ports = free_ports(len(codes))
    results = {}
    for code, port in zip(codes, ports, strict=True):
        results[code] = init_data_dir(
            InitOptions(
                data_dir=base / code,
                agency=AgencyCode(code),
                name=f"Agency {code}",
                listen_port=port,
                api_port=api_port,
                **options,
            ),
            ca=ca,
            now=NOW,
        )
    for code, port in zip(codes, ports, strict=True):
        for other in codes:
            if other != code:
                add_peer(
                    base / other / CONFIG_FILE,
                    agency=code,
                    peer=str(results[code].peer),
                    addrs=[f"/ip4/127.0.0.1/tcp/{port}"],
                )
    return results


def settings_of(base: Path, code: str) -> Settings:
    return load_settings(base / code / CONFIG_FILE, env={})


@asynccontextmanager
async def running(*settings: Settings) -> AsyncIterator[list[Daemon]]:
    """Daemons started in this trio run; stopped on exit."""
    async with trio.open_nursery() as nursery:
        daemons = [await nursery.start(Daemon(s).run) for s in settings]
        try:
            yield daemons
        finally:
            for daemon in daemons:
                daemon.stop()


def client(daemon: Daemon) -> ApiClient:
    return ApiClient(daemon.api_url, daemon.token, timeout=60)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking client call in a worker thread."""
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def metadata(*to: str, number: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "to": list(to),
        "number": number,
        "notation": "VPCP-TH",
        "promulgation_date": "2024-05-02",
        "subject": "Về việc triển khai thử nghiệm",
        "signer": {"full_name": "Nguyễn Văn A", "position": "Chánh Văn phòng"},
        **extra,
    }


def assert_error(response: ApiResponse, status: int, code: str, field: str | None = None) -> None:
    assert response.status == status, (response.status, response.body[:300])
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if field is not None:
        assert body["error"]["field"] == field, body
