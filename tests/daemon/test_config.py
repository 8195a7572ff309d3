"""The configuration file: defaults, environment overrides, errors that name the key, and
the reference in the operator guide."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import pytest
from p2pdoc_node.config import (
    SECTIONS,
    load_settings,
    parse_settings,
    reference_markdown,
    render_config,
)

from p2pdoc.delivery.retry import RetryPolicy
from p2pdoc.errors import ConfigError
from p2pdoc.node.config import DeliveryConfig, ReceiveConfig

LOOPBACK = "/ip4/127.0.0.1/tcp/1"
PEER = "12D3KooWArNzJQotJ3rnkkXLTTf4EgrrLt5Gzxuh9mveF2TTuEsE"
GUIDE = Path(__file__).parents[2] / "docs" / "operator-guide.md"


def minimal(**sections: dict[str, object]) -> dict[str, object]:
    return {"node": {"agency": "000.00.00.G22"}, **sections}


def parse(document: dict[str, object], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_settings(document, path=Path("/srv/p2pdoc/p2pdoc-node.toml"), env=env)


def test_defaults_are_documented_loadable_and_the_librarys() -> None:
    settings = parse(minimal())
    assert settings.api.listen_host == "127.0.0.1"
    assert settings.network.listen_host == "127.0.0.1"
    assert settings.store.path == "node.sqlite"
    assert settings.resolve(settings.store.path) == Path("/srv/p2pdoc/node.sqlite")
    # The written-out defaults are the library's own.
    library = settings.node_config()
    assert library.delivery == DeliveryConfig()
    assert library.receive == ReceiveConfig()
    assert library.delivery.retry == RetryPolicy()
    # The file init writes: every key present with its meaning, and it loads as written.
    text = render_config({"node": {"agency": "000.00.00.H49", "name": "Quảng Ninh"}})
    for cls in SECTIONS:
        assert f"[{cls.SECTION}]" in text
        for item in dataclasses.fields(cls):
            assert f"{item.name} = " in text
    assert parse_settings(tomllib.loads(text), path=Path("/x/c.toml")).node.name == "Quảng Ninh"


def test_environment_overrides_the_file() -> None:
    settings = parse(
        minimal(api={"listen_port": 9000}),
        env={
            "P2PDOC_API_LISTEN_PORT": "9100",
            "P2PDOC_LOG_FORMAT": "json",
            "P2PDOC_TRUST_REQUIRED_ROLES": "competent-signer, organisation",
            "P2PDOC_METRICS_REQUIRE_TOKEN": "no",
            "P2PDOC_DELIVERY_DEADLINE": "3600",
        },
    )
    assert settings.api.listen_port == 9100
    assert settings.log.format == "json"
    assert settings.trust.required_roles == ("competent-signer", "organisation")
    assert settings.metrics.require_token is False
    assert settings.node_config().delivery.deadline == 3600.0


@pytest.mark.parametrize(
    ("document", "env", "key", "words"),
    [
        ({}, None, "node.agency", "required"),
        (minimal(colour={}), None, "colour", "unknown section"),
        (minimal(api={"port": 1}), None, "api.port", "unknown key"),
        (minimal(api={"listen_port": "8480"}), None, "api.listen_port", "integer"),
        (minimal(api={"listen_port": 70000}), None, "api.listen_port", "0..65535"),
        (minimal(api={"listen_host": "localhost"}), None, "api.listen_host", "IP address"),
        ({"node": {"agency": "G22"}}, None, "node.agency", ""),
        (minimal(log={"format": "xml"}), None, "log.format", "text, json"),
        (minimal(store={"synchronous": "OFF"}), None, "store.synchronous", "FULL"),
        (minimal(delivery={"deadline": -1}), None, "delivery.deadline", "positive"),
        (minimal(delivery={"retry_jitter": 1.5}), None, "delivery.retry_jitter", "[0, 1)"),
        (minimal(delivery={"retry_factor": math.nan}), None, "delivery.retry_factor", "1..1000"),
        (minimal(delivery={"retry_factor": 1e300}), None, "delivery.retry_factor", "1..1000"),
        (
            minimal(delivery={"retry_maximum": float("inf")}), None,
            "delivery.retry_maximum", "positive",
        ),
        (minimal(delivery={"deadline": 1e300}), None, "delivery.deadline", "at most"),
        (minimal(trust={"roots": []}), None, "trust.roots", "at least one"),
        (minimal(trust={"roots": "root.pem"}), None, "trust.roots", "list"),
        (minimal(trust={"roots": ["root.pem", ""]}), None, "trust.roots[1]", "must name"),
        (minimal(), {"P2PDOC_STORE_PATH": ""}, "store.path", "must name"),
        (minimal(api={"spool_dir": " "}), None, "api.spool_dir", "must name"),
        (minimal(identity={"key_dir": ""}), None, "identity.key_dir", "must name"),
        (minimal(backup={"dir": ""}), None, "backup.dir", "must name"),
        (minimal(), {"P2PDOC_API_LISTEN_PORT": "eighty"}, "api.listen_port", "environment"),
        (
            minimal(peers=[{"agency": "000.00.00.H49", "peer": "nope", "addrs": [LOOPBACK]}]),
            None, "peers[0].peer", "",
        ),
        (
            minimal(peers=[{"agency": "000.00.00.H49", "peer": PEER, "addrs": ["127.0.0.1:4001"]}]),
            None, "peers[0].addrs[0]", "/ip4/",
        ),
        (
            minimal(peers=[{"agency": "000.00.00.H49", "peer": PEER}]),
            None, "peers[0].addrs", "required",
        ),
        (
            minimal(peers=[
                {"agency": "000.00.00.H49", "peer": PEER, "addrs": ["/ip4/127.0.0.1/tcp/1"]},
                {"agency": "000.00.00.H49", "peer": PEER, "addrs": ["/ip4/127.0.0.1/tcp/2"]},
            ]),
            None, "peers[1].agency", "twice",
        ),
        (
            minimal(signers=[{"role": "competent-signer", "key": "k"}]),
            None, "signers[0].chain", "required",
        ),
    ],
)  # fmt: skip
def test_errors_name_the_key_and_the_problem(
    document: dict[str, object], env: dict[str, str] | None, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(document, env)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert str(caught.value).startswith(key)


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p2pdoc-node.toml"
    path.write_text('[node]\nagency = "000.00.00.G22\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert caught.value.key == str(path) and "TOML" in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", env={})


def test_the_operator_guide_holds_the_whole_reference() -> None:
    assert reference_markdown() in GUIDE.read_text(encoding="utf-8")
