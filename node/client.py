"""A small, synchronous client of a node's HTTP API (what the CLI's ``send``, ``inbox``,
``status`` and ``receipts`` use), on the standard library only.

Goals: find a data directory's API and token; stream uploads from files with a progress
callback (bytes and rate) without reading a file whole; hand back status, headers and body
untouched so that callers show the API's own error shape. Non-goals: retries, TLS.
"""

from __future__ import annotations

import http.client
import json
import mimetypes
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from p2pdoc.errors import NetworkError

from .config import Settings
from .datadir import RUNTIME_FILE, read_token

__all__ = ["ApiClient", "ApiResponse", "Progress", "client_for"]

_CHUNK: Final = 256 << 10

Progress = Callable[[int, int], None]
"""Called with (bytes sent so far, total bytes) while an upload runs."""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A response as received."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def error(self) -> dict[str, object]:
        """The ``error`` object of an error response (a made-up one for a non-JSON body)."""
        try:
            value = self.json()
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("error"), dict):
            return dict(value["error"])
        return {"code": "http_error", "message": self.body[:200].decode("utf-8", "replace")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def client_for(settings: Settings, *, timeout: float = 120.0) -> ApiClient:
    """A client of the daemon of this configuration: the address the running daemon wrote
    in ``daemon.json``, else the configured one; the token from ``api.token_file``.

    Raises:
        KeyFileError: the token file is missing or readable by others.
    """
    url = f"http://{settings.api.listen_host}:{settings.api.listen_port}"
    runtime = settings.base / RUNTIME_FILE
    try:
        info = json.loads(runtime.read_text(encoding="utf-8"))
        if isinstance(info, dict) and _pid_alive(int(info["pid"])) and info.get("api"):
            url = str(info["api"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return ApiClient(url, read_token(settings.resolve(settings.api.token_file)), timeout=timeout)


class ApiClient:
    """Requests to one node's API.

    Args:
        base_url: ``http://host:port``.
        token: the bearer token.
        timeout: seconds for connecting and for each read.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise NetworkError(f"the API address {base_url!r} is not http://host:port")
        self.base_url = base_url.rstrip("/")
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self.token = token
        self.timeout = timeout

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self._host, self._port, timeout=timeout if timeout is not None else self.timeout
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        json_body: object = None,
        body: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> ApiResponse:
        """Send one request and read the whole response.

        Raises:
            NetworkError: the daemon cannot be reached (not running, wrong address).
        """
        if params:
            query = {k: str(v) for k, v in params.items() if v is not None}
            path = f"{path}?{urllib.parse.urlencode(query)}"
        send_headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            send_headers["Content-Type"] = "application/json"
        send_headers.update(headers or {})
        connection = self._connection(timeout)
        sending: OSError | None = None
        try:
            try:
                connection.request(method, path, body=body, headers=send_headers)
            except OSError as exc:
                # The node may have refused the request before reading all of it (e.g. 413):
                # its answer can still be waiting to be read.
                sending = exc
            response = connection.getresponse()
            data = response.read()
            return ApiResponse(response.status, dict(response.getheaders()), data)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(
                f"cannot reach the node's API at {self.base_url}: {sending or exc} (is it running?)"
            ) from None
        finally:
            connection.close()

    def get(self, path: str, **params: object) -> ApiResponse:
        return self.request("GET", path, params=params)

    def post(self, path: str, value: object) -> ApiResponse:
        return self.request("POST", path, json_body=value)

    def download(self, path: str, target: Path, *, progress: Progress | None = None) -> ApiResponse:
        """Stream a file from the API into ``target`` (written only on success)."""
        connection = self._connection(None)
        partial = target.with_name(f".{target.name}.partial")
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            response = connection.getresponse()
            if response.status != 200:
                return ApiResponse(response.status, dict(response.getheaders()), response.read())
            total = int(response.getheader("Content-Length") or 0)
            done = 0
            with open(partial, "wb") as handle:
                while chunk := response.read(_CHUNK):
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            os.replace(partial, target)
            return ApiResponse(response.status, dict(response.getheaders()), b"")
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"download from {self.base_url} failed: {exc}") from None
        finally:
            connection.close()
            partial.unlink(missing_ok=True)

    def submit(
        self,
        metadata: object,
        files: Sequence[Path],
        *,
        names: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> ApiResponse:
        """Submit a document: ``metadata`` as JSON and ``files`` streamed from disk."""
        boundary = f"p2pdoc-{secrets.token_hex(12)}"
        chosen = list(names) if names is not None else [p.name for p in files]
        if len(chosen) != len(files):
            raise NetworkError("give one name per file")
        heads: list[bytes] = []
        meta = json.dumps(metadata, ensure_ascii=False).encode()
        first = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
                "Content-Type: application/json\r\n\r\n"
            ).encode()
            + meta
            + b"\r\n"
        )
        for name in chosen:
            media = mimetypes.guess_type(name)[0] or "application/octet-stream"
            quoted = urllib.parse.quote(name)
            heads.append(
                (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                    f"filename=\"{_quoted(name)}\"; filename*=UTF-8''{quoted}\r\n"
                    f"Content-Type: {media}\r\n\r\n"
                ).encode()
            )
        tail = f"--{boundary}--\r\n".encode()
        sizes = [p.stat().st_size for p in files]
        total = len(first) + sum(len(h) + s + 2 for h, s in zip(heads, sizes, strict=True))
        total += len(tail)

        def body() -> Iterator[bytes]:
            sent = 0

            def note(n: int) -> None:
                nonlocal sent
                sent += n
                if progress is not None:
                    progress(sent, total)

            yield first
            note(len(first))
            for head, path in zip(heads, files, strict=True):
                yield head
                note(len(head))
                with open(path, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        yield chunk
                        note(len(chunk))
                yield b"\r\n"
                note(2)
            yield tail
            note(len(tail))

        return self.request(
            "POST",
            "/api/v1/outbox",
            body=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(total),
            },
        )


def _quoted(name: str) -> str:
    """A file name for a quoted header parameter: UTF-8 as browsers send it, with the
    characters that would end the parameter percent-encoded."""
    return name.replace("%", "%25").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class RateMeter:
    """Bytes and rate of a transfer, for progress lines."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()

    def line(self, done: int, total: int) -> str:
        elapsed = max(1e-6, self._clock() - self.started)
        rate = done / elapsed
        share = f" ({100 * done / total:.0f} %)" if total else ""
        return f"{_size(done)} of {_size(total)}{share}, {_size(rate)}/s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
