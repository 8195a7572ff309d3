"""The trust package's public names are exactly its ``__all__``."""

from __future__ import annotations

import p2pdoc.trust


def test_all_is_exact() -> None:
    public = {name for name in vars(p2pdoc.trust) if not name.startswith("_")}
    modules = {
        "ca",
        "identity",
        "keys",
        "policy",
        "profile",
        "revocation",
        "sealing",
        "signatures",
        "validation",
    }
    assert public - modules == set(p2pdoc.trust.__all__)
    assert sorted(p2pdoc.trust.__all__) == p2pdoc.trust.__all__
    for name in p2pdoc.trust.__all__:
        assert getattr(p2pdoc.trust, name) is not None
