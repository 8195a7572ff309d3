"""The operator's dashboard page, served at ``/dashboard``.

This is a placeholder: a static page that lists the JSON endpoints a dashboard reads. The
page holds no data; its script would call the API with the bearer token, which the operator
pastes in (or passes in the address's fragment, ``/dashboard#token=...``, which browsers do
not send to the server).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["dashboard_page"]


def dashboard_page(*, agency: str, name: str, routes: Mapping[str, Mapping[str, Any]]) -> str:
    """The page for agency ``agency`` listing ``routes`` (path -> method -> OpenAPI op)."""
    rows = []
    for path, methods in routes.items():
        for method, spec in methods.items():
            rows.append(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>".format(
                    html.escape(method.upper()),
                    html.escape(path),
                    html.escape(str(spec.get("summary", ""))),
                )
            )
    title = html.escape(f"p2pdoc node {agency}" + (f" - {name}" if name else ""))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; vertical-align: top; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>The dashboard reads these JSON endpoints (bearer token required; the description is at
<a href="/openapi.json">/openapi.json</a>):</p>
<table>
{chr(10).join(rows)}
</table>
</body>
</html>
"""
