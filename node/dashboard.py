"""The operator's dashboard: a page at ``/dashboard``, its static files, and the one JSON
read (``GET /api/v1/dashboard``) it refreshes from.

Goals: one page, no build step and nothing loaded from elsewhere (plain HTML, a style sheet
and a small script from ``p2pdoc_node/static``), that shows an agency's clerks and operators
this node (agency, peer ID, health, staleness of the peer list and revocation lists), the
documents it sent with every recipient's delivery state and status trail, the documents it
received with the statuses reported on them, and its peers; it follows the event feed
(``/api/v1/events``, long-poll) and reads a fresh snapshot when something happens, and every
15 s besides. The page itself holds no data and needs no token; its script sends the API's
bearer token, which it keeps in ``sessionStorage`` (taken from the address's fragment,
``/dashboard#token=...``, which browsers do not send to the server, or typed into the page).
The page's Content-Security-Policy allows scripts, styles, images and requests from this
origin only, and Trusted Types with no policy, so the script can put data into the page only
as text. Non-goals: changing anything (acknowledging, reporting statuses: that is the
document software's job), more than the newest :data:`MAX_LIMIT` documents each way.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

from p2pdoc.codecs.cid import Cid
from p2pdoc.errors import NotFound

from .desk import STATUS_MEANINGS, Desk, Json, report_json

__all__ = [
    "ASSETS",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "PAGE_HEADERS",
    "STATUS_MEANINGS_VI",
    "STATUS_SHORT",
    "dashboard_asset",
    "dashboard_page",
    "dashboard_snapshot",
]

DEFAULT_LIMIT: Final = 25
MAX_LIMIT: Final = 100
_HISTORY: Final = 12

STATUS_MEANINGS_VI: Final[dict[str, str]] = {
    "01": "Đã đến",
    "02": "Từ chối tiếp nhận",
    "03": "Đã tiếp nhận",
    "04": "Phân công",
    "05": "Đang xử lý",
    "06": "Hoàn thành",
    "13": "Lấy lại",
    "15": "Đồng ý lấy lại/cập nhật",
    "16": "Từ chối lấy lại/cập nhật",
}
"""The edXML status codes' names as Vietnamese document software shows them."""

STATUS_SHORT: Final[dict[str, str]] = {
    "01": "arrived",
    "02": "rejected",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "completed",
    "13": "recall requested",
    "15": "recall agreed",
    "16": "recall refused",
}
"""One or two words per status code, for the page's status trails."""

ASSETS: Final[dict[str, str]] = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""The files under ``static/`` served at ``/dashboard/assets/<name>``, with their types."""

_CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)

PAGE_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
"""Headers of the page and its files: this origin only, no framing, no referrer."""


def dashboard_page(*, agency: str, name: str, routes: Mapping[str, Mapping[str, Any]]) -> str:
    """The page of agency ``agency`` (named ``name``): a skeleton the script fills in, with
    the API's ``routes`` (path -> method -> OpenAPI operation) listed at its foot.

    Every value is HTML-escaped; the page holds no document data.
    """
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
    code = html.escape(agency)
    agency_name = html.escape(name)
    title = html.escape(f"{agency} {name} · p2pdoc" if name else f"{agency} · p2pdoc")
    return _PAGE.format(title=title, code=code, name=agency_name, routes="\n".join(rows))


_PAGE: Final = """<!doctype html>
<html lang="vi">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="icon" href="/dashboard/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard/assets/dashboard.css">
<script src="/dashboard/assets/dashboard.js" defer></script>
</head>
<body>
<header class="top">
  <div class="brand">
    <span class="logo" aria-hidden="true"></span>
    <div>
      <div class="agency"><span class="code">{code}</span> <span class="name">{name}</span></div>
      <div class="sub">p2pdoc node · Bảng theo dõi văn bản điện tử</div>
    </div>
  </div>
  <div class="top-right">
    <span id="health-badge" class="badge muted">…</span>
    <span id="live" class="live" data-state="idle">not connected</span>
    <button id="sign-out" type="button" hidden>Sign out</button>
  </div>
</header>

<section id="login" class="panel login" hidden>
  <h2>API token <span class="vi">Mã truy cập</span></h2>
  <p>The dashboard reads this node's API with its bearer token (the file
  <code>api-token</code> in the data directory). It is kept in this browser tab only.</p>
  <form id="login-form" autocomplete="off">
    <label for="token-input">Token</label>
    <input id="token-input" type="password" spellcheck="false" required>
    <button type="submit">Open dashboard</button>
  </form>
  <p id="login-error" class="error" hidden></p>
</section>

<main id="board" hidden>
  <p id="banner" class="banner" hidden></p>
  <section class="panel" id="node-panel">
    <h2>This node <span class="vi">Nút của đơn vị</span></h2>
    <div id="node" class="cards"></div>
  </section>
  <section class="panel">
    <h2>Outgoing documents <span class="vi">Văn bản đi</span>
      <span id="outgoing-count" class="count"></span></h2>
    <div id="outgoing"></div>
  </section>
  <section class="panel">
    <h2>Incoming documents <span class="vi">Văn bản đến</span>
      <span id="incoming-count" class="count"></span></h2>
    <div id="incoming"></div>
  </section>
  <section class="panel">
    <h2>Peers <span class="vi">Các nút kết nối</span>
      <span id="peers-count" class="count"></span></h2>
    <div id="peers"></div>
  </section>
  <section class="panel legend-panel">
    <h2>Status codes <span class="vi">Mã trạng thái (edXML)</span></h2>
    <div id="legend" class="legend"></div>
  </section>
</main>

<footer class="foot">
  <p id="clock-note"></p>
  <details>
    <summary>API endpoints (bearer token; described at
    <a href="/openapi.json">/openapi.json</a>)</summary>
    <table class="routes">
{routes}
    </table>
  </details>
</footer>
</body>
</html>
"""


def dashboard_asset(name: str) -> tuple[bytes, str]:
    """The bytes and media type of the static file ``name``.

    Raises:
        NotFound: ``name`` is not one of :data:`ASSETS`.
    """
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no dashboard file {name[:80]!r}")
    return (resources.files(__package__) / "static" / name).read_bytes(), media_type


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _report(report: Mapping[str, object]) -> Json:
    """A status report as the page shows it (no evidence, digests or node)."""
    staff = _mapping(report.get("staff"))
    return {
        "seq": report.get("seq"),
        "code": report.get("code"),
        "at": report.get("at"),
        "staff": {k: _text(staff.get(k)) for k in ("name", "department", "contact")},
        "description": _text(report.get("description")),
    }


def _trail(value: object) -> Json:
    trail = _mapping(value)
    return {
        "complete": bool(trail.get("complete", True)),
        "reports": [_report(_mapping(r)) for r in _items(trail.get("reports"))],
    }


def _learn(names: dict[str, str], organisation: object) -> None:
    org = _mapping(organisation)
    code, name = _text(org.get("code")), _text(org.get("name"))
    if code and name:
        names.setdefault(code, name)


async def _outgoing(desk: Desk, limit: int, names: dict[str, str]) -> list[Json]:
    page = await desk.outgoing(limit=limit)
    out: list[Json] = []
    for summary in _items(page.get("items")):
        root = _text(_mapping(summary).get("root"))
        try:
            detail = await desk.outgoing_detail(root)
        except NotFound:
            continue  # listed but its manifest is gone: nothing to show
        envelope = _mapping(detail.get("envelope"))
        for organisation in _items(envelope.get("to")):
            _learn(names, organisation)
        recipients: list[Json] = []
        for code, value in _mapping(detail.get("deliveries")).items():
            delivery = _mapping(value)
            receipt = _mapping(delivery.get("receipt"))
            recipients.append(
                {
                    "agency": code,
                    "state": _text(delivery.get("state")),
                    "attempts": _int(delivery.get("attempts")) or 0,
                    "next_at": _int(delivery.get("next_at")),
                    "deadline": _int(delivery.get("deadline")),
                    "last_error": _text(delivery.get("last_error")),
                    "updated_at": _int(delivery.get("updated_at")),
                    "receipt_at": _int(receipt.get("received_at")),
                    "history": _items(delivery.get("history"))[-_HISTORY:],
                    "status": _trail(delivery.get("status")),
                }
            )
        out.append(
            {
                "root": root,
                "document_id": detail.get("document_id"),
                "subject": _text(envelope.get("subject")),
                "created_at": _mapping(summary).get("created_at"),
                "size": detail.get("size"),
                "files": len(_items(detail.get("files"))),
                "state": detail.get("state"),
                "recipients": recipients,
            }
        )
    return out


async def _incoming(desk: Desk, limit: int, names: dict[str, str]) -> list[Json]:
    page = await desk.incoming(state="all", limit=limit)
    node = desk.node
    out: list[Json] = []
    for value in _items(page.get("items")):
        item = dict(_mapping(value))
        _learn(names, {"code": item.get("sender"), "name": item.get("sender_name")})
        trail = await node.status_trail(Cid.parse(_text(item.get("root"))), node.agency)
        item["status"] = _trail(
            {"complete": trail.complete, "reports": [report_json(r) for r in trail.reports]}
        )
        out.append(item)
    return out


async def dashboard_snapshot(desk: Desk, *, limit: int = DEFAULT_LIMIT) -> Json:
    """Everything the page shows, in one read: ``events`` (the feed's ``boot`` and ``last``
    number when the snapshot began, to long-poll from), ``now`` (the node's clock, ms),
    ``node`` (as ``GET /api/v1/health``), ``peers``, the newest ``limit`` documents sent
    (``outgoing``: per recipient its delivery state, attempts, next attempt, deadline, last
    error, receipt time, recent transitions and status trail) and received (``incoming``:
    state, sender, received time and the statuses reported here), ``names`` (agency code ->
    name, as learnt from this node's configuration and the documents' envelopes) and
    ``status_codes`` (code -> ``short`` and ``en`` English and ``vi`` Vietnamese meaning).

    Raises:
        StoreError: the store failed.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    events = {"boot": desk.activity.boot, "last": desk.activity.last}
    node = await desk.health()
    names: dict[str, str] = {}
    if desk.agency_name:
        names[str(desk.node.agency)] = desk.agency_name
    uptime = node.get("uptime_seconds")
    # Health's uptime is measured on the node's clock: this is that clock's "now".
    now = desk.started_ms + round(uptime * 1000) if isinstance(uptime, int | float) else None
    incoming = await _incoming(desk, limit, names)
    outgoing = await _outgoing(desk, limit, names)
    return {
        "events": events,
        "now": now,
        "node": node,
        "peers": desk.peers(),
        "outgoing": outgoing,
        "incoming": incoming,
        "names": names,
        "status_codes": {
            code: {
                "short": STATUS_SHORT.get(code, code),
                "en": meaning,
                "vi": STATUS_MEANINGS_VI.get(code, ""),
            }
            for code, meaning in STATUS_MEANINGS.items()
        },
    }
