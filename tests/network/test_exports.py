"""The package's public names are exactly these."""

from __future__ import annotations

import p2pdoc.network


def test_network_exports_are_exact() -> None:
    assert sorted(p2pdoc.network.__all__) == [
        "Faults",
        "Libp2pConfig",
        "Libp2pNetwork",
        "MemoryNetwork",
        "MemoryRouter",
        "Network",
        "RouterStats",
        "StreamHandler",
        "memory_addr",
    ]
    for name in p2pdoc.network.__all__:
        assert getattr(p2pdoc.network, name) is not None
