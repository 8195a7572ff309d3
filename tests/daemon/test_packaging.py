"""The distribution: both packages listed, the console script declared."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_package_directory_is_in_the_distribution() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"p2pdoc": "p2pdoc", "p2pdoc_node": "node"}
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "p2pdoc").rglob("__init__.py")
    } | {"p2pdoc_node" for _ in (ROOT / "node").glob("__init__.py")}
    assert set(setuptools["packages"]) == found
    assert project["project"]["scripts"]["p2pdoc-node"] == "p2pdoc_node.cli:main"
    for dependency in ("starlette", "hypercorn", "python-multipart", "prometheus-client"):
        assert any(d.startswith(dependency) for d in project["project"]["dependencies"])
