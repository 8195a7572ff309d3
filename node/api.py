"""The local HTTP API: a Starlette application over the :class:`~p2pdoc_node.desk.Desk`.

Goals: document software talks JSON over HTTP to its own node; every endpoint but
``/openapi.json``, ``/dashboard`` and its static files needs the bearer token; every error is
``{"error": {"code", "message", "field"}}`` with a 4xx status for a bad request (which stores
nothing) and 5xx for the node's own trouble; uploads stream to spool files and stop at the
configured size (413). The application is ASGI and runs on trio (Hypercorn's trio worker,
see :func:`serve_api`), in the same trio run as the node. Non-goals: TLS (the API listens on
loopback; put a reverse proxy in front for anything else), cookies or sessions.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import p2pdoc
from p2pdoc.errors import (
    ConfigError,
    DecodeError,
    InvalidField,
    InvalidValue,
    LimitExceeded,
    NotFound,
    P2pdocError,
    PolicyRefused,
    StorageFull,
    StoreError,
)

from .dashboard import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    PAGE_HEADERS,
    dashboard_asset,
    dashboard_page,
    dashboard_snapshot,
)
from .desk import Desk
from .metrics import CONTENT_TYPE
from .openapi import ROUTES, openapi_document
from .uploads import read_multipart

__all__ = ["ApiLimits", "build_app", "error_body", "serve_api"]

log = logging.getLogger(__name__)

MAX_WAIT: Final = 60.0
MAX_STATUS_BODY: Final = 16 << 10
DRAIN_BYTES: Final = 16 << 20
DRAIN_SECONDS: Final = 5.0
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Request methods counted under their own name; any other is ``other`` (a client must not
be able to add metric series without bound)."""
_QUERY_PARAMETERS: Final = frozenset({"after", "limit", "wait", "state"})
"""Fields that are query parameters: a wrong one is 400, a wrong body field 422."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiLimits:
    """What one request may carry."""

    max_upload_bytes: int = 512 << 20
    """Largest request body (bytes); a larger one is refused with 413."""
    max_files: int = 100
    """Most files in one submission."""
    max_metadata_bytes: int = 256 << 10
    """Largest metadata JSON."""


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    """The error shape every failing request answers with."""
    return {"error": {"code": code, "message": message, "field": field}}


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _translate(exc: P2pdocError) -> JSONResponse:
    """A library error as an HTTP error response."""
    if isinstance(exc, InvalidField):
        status = 400 if exc.field in _QUERY_PARAMETERS else 422
        return _error(status, exc.code, str(exc), exc.field)
    if isinstance(exc, LimitExceeded):
        return _error(413, "too_large", str(exc))
    if isinstance(exc, _UnsupportedMedia):
        return _error(415, "unsupported_media_type", str(exc))
    if isinstance(exc, DecodeError):
        code = "malformed_json" if "JSON" in str(exc) else "malformed_body"
        return _error(400, code, str(exc))
    if isinstance(exc, NotFound):
        return _error(404, "not_found", str(exc))
    if isinstance(exc, PolicyRefused):
        return _error(403, "policy_refused", str(exc))
    if isinstance(exc, ConfigError):
        return _error(503, "not_configured", str(exc), exc.key)
    if isinstance(exc, InvalidValue):
        return _error(422, "invalid_value", str(exc))
    if isinstance(exc, StorageFull):
        return _error(507, "storage_full", str(exc))
    if isinstance(exc, StoreError):
        return _error(503, "store_unavailable", str(exc))
    return _error(500, "internal", f"{type(exc).__name__}: {exc}")


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidField(name, "must be an integer") from None
    if not low <= value <= high:
        raise InvalidField(name, f"must be {low}..{high}")
    return value


def _wait_param(request: Request) -> float:
    text = request.query_params.get("wait")
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise InvalidField("wait", "must be a number of seconds") from None
    if not (0 <= value <= MAX_WAIT and math.isfinite(value)):
        raise InvalidField("wait", f"must be 0..{MAX_WAIT:g} seconds")
    return value


async def _read_bounded(stream: AsyncIterator[bytes], limit: int) -> bytes:
    data = bytearray()
    async for chunk in stream:
        data += chunk
        if len(data) > limit:
            raise LimitExceeded("request body", len(data), limit)
    return bytes(data)


async def _drain(stream: AsyncIterator[bytes]) -> None:
    """Read and drop up to :data:`DRAIN_BYTES` more of a refused body, for a few seconds."""
    seen = 0
    with trio.move_on_after(DRAIN_SECONDS):
        try:
            async for chunk in stream:
                seen += len(chunk)
                if seen > DRAIN_BYTES:
                    return
        except (ClientDisconnect, RuntimeError):
            return


class _UnsupportedMedia(DecodeError):
    """A body of another media type than the endpoint takes (415)."""


async def _json_body(request: Request, limit: int) -> object:
    if _media_type(request) != "application/json":
        return _Unsupported()
    data = await _read_bounded(request.stream(), limit)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"the body is not valid JSON: {exc}") from None


class _Unsupported:
    """Marks a body of an unsupported media type."""


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def build_app(
    desk: Desk,
    *,
    token: str,
    limits: ApiLimits,
    spool_dir: Any,
    metrics_need_token: bool = True,
) -> Starlette:
    """The API application for ``desk``.

    Args:
        token: the bearer token clients must present.
        limits: request limits.
        spool_dir: directory (a :class:`pathlib.Path`) for uploads in progress.
        metrics_need_token: whether ``/metrics`` needs the token.
    """
    expected = token.encode()
    metrics = desk.metrics
    spec = openapi_document(
        title=f"p2pdoc node {desk.node.agency}", version=getattr(p2pdoc, "__version__", "0")
    )

    def endpoint(
        route: str,
        handler: Callable[[Request], Awaitable[Response]],
        *,
        auth: bool = True,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            response: Response
            try:
                if auth and not _authorised(request, expected):
                    response = _error(401, "unauthorized", "a valid bearer token is required")
                else:
                    response = await handler(request)
            except P2pdocError as exc:
                response = _translate(exc)
                if response.status_code >= 500:
                    log.warning("%s %s failed: %s", request.method, route, exc)
            except ClientDisconnect:
                response = _error(400, "malformed_body", "the client went away mid-request")
            metrics.api_requests.labels(request.method, route, str(response.status_code)).inc()
            return response

        return run

    # -- handlers -----------------------------------------------------------------------

    async def health(request: Request) -> Response:
        body = await desk.health()
        body["runtime"] = {
            "async_library": _async_library(),
            "server": "hypercorn",
            "version": getattr(p2pdoc, "__version__", "0"),
        }
        return JSONResponse(body)

    async def peers(request: Request) -> Response:
        return JSONResponse(desk.peers())

    async def events(request: Request) -> Response:
        after = _int_param(request, "after", 0, 0, 1 << 62)
        wait = _wait_param(request)
        found = await desk.activity.wait(after, wait) if wait else desk.activity.since(after)
        return JSONResponse(
            {"boot": desk.activity.boot, "last": desk.activity.last, "events": found}
        )

    async def outbox(request: Request) -> Response:
        return JSONResponse(
            await desk.outgoing(
                after=request.query_params.get("after"),
                limit=_int_param(request, "limit", 50, 1, 500),
            )
        )

    async def submit(request: Request) -> Response:
        stream = request.stream()
        try:
            return await _submit(request, stream)
        except P2pdocError:
            # Read (and drop) what the client is still sending, within bounds, so that it
            # gets to read the answer rather than a reset connection.
            await _drain(stream)
            raise
        finally:
            await stream.aclose()

    async def _submit(request: Request, stream: AsyncGenerator[bytes, None]) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise LimitExceeded("request body", int(declared), limits.max_upload_bytes)
        kind = _media_type(request)
        if kind == "application/json":
            metadata = await _read_bounded(stream, limits.max_metadata_bytes)
            return JSONResponse(await desk.submit(metadata, []), status_code=202)
        if kind != "multipart/form-data":
            raise _UnsupportedMedia(
                "submit multipart/form-data (metadata + files) or application/json"
            )
        upload = await read_multipart(
            stream,
            request.headers.get("content-type", ""),
            spool_dir=spool_dir,
            max_body=limits.max_upload_bytes,
            max_files=limits.max_files,
            max_metadata=limits.max_metadata_bytes,
        )
        try:
            if upload.metadata is None:
                raise InvalidField("metadata", "is required", code="missing_field")
            result = await desk.submit(upload.metadata, upload.files)
        finally:
            upload.discard()
        return JSONResponse(result, status_code=202)

    async def outbox_detail(request: Request) -> Response:
        return JSONResponse(await desk.outgoing_detail(request.path_params["root"]))

    async def outbox_receipts(request: Request) -> Response:
        return JSONResponse(await desk.receipts(request.path_params["root"]))

    async def outbox_status(request: Request) -> Response:
        return JSONResponse(await desk.trails(request.path_params["root"]))

    async def receipts(request: Request) -> Response:
        return JSONResponse(
            await desk.all_receipts(
                after=request.query_params.get("after"),
                limit=_int_param(request, "limit", 50, 1, 500),
            )
        )

    async def inbox(request: Request) -> Response:
        state = request.query_params.get("state", "stored")
        after = request.query_params.get("after")
        limit = _int_param(request, "limit", 50, 1, 500)
        wait = _wait_param(request)
        page = await desk.incoming(state=state, after=after, limit=limit)
        if wait and not page["items"] and state == "stored":
            await desk.wait_incoming(wait)
            page = await desk.incoming(state=state, after=after, limit=limit)
        return JSONResponse(page)

    async def inbox_detail(request: Request) -> Response:
        return JSONResponse(await desk.incoming_detail(request.path_params["root"]))

    async def file(request: Request) -> Response:
        entry, chunks = await desk.attachment(
            request.path_params["root"], request.path_params["name"]
        )

        async def body() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk

        return StreamingResponse(
            body(),
            media_type=entry.media_type,
            headers={
                "Content-Length": str(entry.size),
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(entry.name)}",
                "X-Content-Cid": str(entry.cid),
            },
        )

    async def ack(request: Request) -> Response:
        return JSONResponse(await desk.ack(request.path_params["root"]))

    async def inbox_status(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(await desk.own_trail(request.path_params["root"]))
        value = await _json_body(request, MAX_STATUS_BODY)
        if isinstance(value, _Unsupported):
            return _error(415, "unsupported_media_type", "send application/json")
        try:
            return JSONResponse(await desk.post_status(request.path_params["root"], value))
        except InvalidField:
            raise
        except InvalidValue as exc:
            return _error(409, "status_not_allowed", str(exc), "code")

    async def metrics_endpoint(request: Request) -> Response:
        await desk.refresh()
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(
            dashboard_page(agency=str(desk.node.agency), name=desk.agency_name, routes=ROUTES),
            headers=PAGE_HEADERS,
        )

    async def dashboard_file(request: Request) -> Response:
        body, media_type = dashboard_asset(request.path_params["name"])
        return Response(body, media_type=media_type, headers=PAGE_HEADERS)

    async def dashboard_data(request: Request) -> Response:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        return JSONResponse(await dashboard_snapshot(desk, limit=limit))

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "agency": str(desk.node.agency),
                "api": "/api/v1",
                "openapi": "/openapi.json",
                "dashboard": "/dashboard",
            }
        )

    table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str], bool]] = [
        ("/", index, ["GET"], False),
        ("/openapi.json", openapi, ["GET"], False),
        ("/dashboard", dashboard, ["GET"], False),
        ("/dashboard/assets/{name}", dashboard_file, ["GET"], False),
        ("/api/v1/dashboard", dashboard_data, ["GET"], True),
        ("/metrics", metrics_endpoint, ["GET"], metrics_need_token),
        ("/api/v1/health", health, ["GET"], True),
        ("/api/v1/peers", peers, ["GET"], True),
        ("/api/v1/events", events, ["GET"], True),
        ("/api/v1/outbox", outbox, ["GET"], True),
        ("/api/v1/outbox", submit, ["POST"], True),
        ("/api/v1/outbox/{root}", outbox_detail, ["GET"], True),
        ("/api/v1/outbox/{root}/receipts", outbox_receipts, ["GET"], True),
        ("/api/v1/outbox/{root}/status", outbox_status, ["GET"], True),
        ("/api/v1/outbox/{root}/files/{name}", file, ["GET"], True),
        ("/api/v1/receipts", receipts, ["GET"], True),
        ("/api/v1/inbox", inbox, ["GET"], True),
        ("/api/v1/inbox/{root}", inbox_detail, ["GET"], True),
        ("/api/v1/inbox/{root}/files/{name}", file, ["GET"], True),
        ("/api/v1/inbox/{root}/ack", ack, ["POST"], True),
        ("/api/v1/inbox/{root}/status", inbox_status, ["GET", "POST"], True),
    ]
    routes = [
        Route(path, endpoint(path, handler, auth=auth), methods=methods)
        for path, handler, methods, auth in table
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = _error(exc.status_code, code, str(exc.detail))
        method = request.method if request.method in _METHODS else "other"
        metrics.api_requests.labels(method, "(none)", str(exc.status_code)).inc()
        return response

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", "the node failed to answer; see its log")

    return Starlette(
        routes=routes, exception_handlers={HTTPException: http_error, Exception: crash}
    )


def _async_library() -> str:
    """``"trio"`` when this request is being served inside a trio run."""
    try:
        trio.lowlevel.current_root_task()
    except RuntimeError:
        return "other"
    return "trio"


def _authorised(request: Request, expected: bytes) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), expected)


async def serve_api(
    app: Starlette,
    *,
    host: str,
    port: int,
    shutdown: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with Hypercorn's trio worker until ``shutdown`` returns.

    ``task_status.started`` gets the base URL actually bound (``http://127.0.0.1:<port>``).
    """
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's messages go through the daemon's own logging configuration.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    config.keep_alive_timeout = 30.0
    config.include_server_header = False

    async def started_with(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(started_with)
        task_status.started(binds[0])
