"""The dashboard in a real browser: Debian's headless chromium, driven over the DevTools
protocol (CDP) on a websocket, against daemons on 127.0.0.1 exchanging a real document.

The browser is asked for the token, refuses a wrong one, then follows a document live (no
reload) from submission to its receipt and status trail, with a recipient that is down shown
waiting for a retry; the recipient's dashboard, opened with ``#token=`` in the address, shows
the document arriving and being acknowledged. Waiting is done inside the page (a
MutationObserver promise awaited through ``Runtime.evaluate``, bounded by a timer there and a
``trio.fail_after`` here), never by sleeping. A full-page screenshot is saved under
``tmp_path``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import struct
import subprocess
import tomllib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from p2pdoc_node.dashboard import ASSETS
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from .helpers import (
    GOV,
    HA_NAM,
    QUANG_NINH,
    assert_error,
    call,
    client,
    make_ca,
    make_nodes,
    metadata,
    running,
    settings_of,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1400,1000",
)
INSTALL_HINT: Final = (
    "Debian's chromium is needed by the dashboard's browser test: install it with "
    "`apt-get install -y chromium` (as root; run `apt-get update` first on a fresh machine)"
)
INSTALL_TIMEOUT: Final = 900
START_TIMEOUT: Final = 30
WIDTH, HEIGHT = 1400, 1000
VIETNAM: Final = dt.timezone(dt.timedelta(hours=7))  # no daylight saving time
QN_NAME: Final = "UBND tỉnh Quảng Ninh"
SUBJECT: Final = "Về việc <b>thử nghiệm</b> & kiểm tra <img src=x onerror=alert(1)>"


# -- chromium --------------------------------------------------------------------------------


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=False,
    )


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable; installed with apt-get (once a session) when missing and
    this process may, else the test fails saying how to install it."""
    found = shutil.which("chromium")
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"chromium is not installed. {INSTALL_HINT}", pytrace=False)
    done = _apt("install", "-y", "chromium")
    if done.returncode != 0:  # perhaps no package lists yet
        _apt("update")
        done = _apt("install", "-y", "chromium")
    found = shutil.which("chromium")
    if done.returncode != 0 or found is None:
        pytest.fail(
            f"installing chromium failed ({done.returncode}): {done.stderr[-2000:]}\n"
            f"{INSTALL_HINT}",
            pytrace=False,
        )
    return found


class Browser:
    """A CDP connection to the browser: commands by id, events kept (bounded), errors the
    pages report collected in :attr:`errors`."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._next = 0
        self._replies: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, trio.MemorySendChannel[dict[str, Any]]]] = []
        self.events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=500)
        self.errors: list[str] = []

    async def pump(self) -> None:
        """Read replies and events until the connection closes."""
        with suppress(ConnectionClosed):
            while True:
                message = json.loads(await self._ws.get_message())
                if "id" in message:
                    channel = self._replies.pop(message["id"], None)
                    if channel is not None:
                        channel.send_nowait(message)
                    continue
                method, params = message["method"], message.get("params", {})
                self.events.append((method, params))
                self._note_error(method, params)
                for waiter in list(self._waiters):
                    if waiter[0] == method and waiter[1] in (None, message.get("sessionId")):
                        self._waiters.remove(waiter)
                        waiter[2].send_nowait(params)

    def _note_error(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(str(details.get("exception", {}).get("description", details)))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            # Network errors are the test's own doing (the refused token's 401).
            if entry["level"] == "error" and entry.get("source") != "network":
                self.errors.append(f"{entry.get('source')}: {entry['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        self._next += 1
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._replies[self._next] = send
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self._ws.send_message(json.dumps(message))
        reply = await receive.receive()
        if "error" in reply:
            raise AssertionError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply["result"]
        return result

    def expect(self, method: str, session: str | None = None) -> trio.MemoryReceiveChannel[Any]:
        """A channel that gets the params of the next ``method`` event (register first)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiters.append((method, session, send))
        return receive

    async def new_page(self, *, timezone: str | None = None) -> Page:
        """A new tab of :data:`WIDTH` x :data:`HEIGHT` (in the IANA ``timezone``, if given)."""
        target = await self.call("Target.createTarget", {"url": "about:blank"})
        attached = await self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            await page.call(f"{domain}.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        if timezone is not None:
            await page.call("Emulation.setTimezoneOverride", {"timezoneId": timezone})
        return page


class Page:
    """One tab, through its flattened CDP session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.call(method, params, session=self.session)

    async def goto(self, url: str) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        result = await self.call("Page.navigate", {"url": url})
        assert "errorText" not in result, result
        await loaded.receive()

    async def evaluate(self, expression: str, *, wait: bool = False) -> Any:
        result = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": wait},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(details.get("exception", {}).get("description", details))
        return result["result"].get("value")

    async def wait_for(self, condition: str, *, within: float = 30) -> Any:
        """Wait, inside the page, until the JS expression ``condition`` is truthy (checked
        now and on every DOM change); its value. Fails with the page's text after
        ``within`` seconds."""
        script = f"""new Promise((resolve, reject) => {{
          const test = () => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }};
          const first = test();
          if (first) {{ resolve(first); return; }}
          const observer = new MutationObserver(() => {{
            const value = test();
            if (value) {{ observer.disconnect(); clearTimeout(timer); resolve(value); }}
          }});
          observer.observe(document.documentElement,
            {{subtree: true, childList: true, characterData: true, attributes: true}});
          const timer = setTimeout(() => {{
            observer.disconnect();
            reject(new Error("timed out waiting for " + {json.dumps(condition)} + "\\n"
              + document.body.innerText.slice(0, 4000)));
          }}, {round(within * 1000)});
        }})"""
        with trio.fail_after(within + 10):
            try:
                return await self.evaluate(script, wait=True)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\npage errors: {self.browser.errors}") from None

    async def text(self, selector: str = "body") -> str:
        value = await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")
        return str(value)

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page (beyond the window) written to ``path``."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": WIDTH,
                    "height": min(8000, max(HEIGHT, size["height"])),
                    "scale": 1,
                },
            },
        )
        data = base64.b64decode(shot["data"])
        await trio.Path(path).write_bytes(data)
        return data


async def _devtools_url(
    stream: trio.abc.ReceiveStream, lines: deque[str], *, task_status: trio.TaskStatus[str]
) -> None:
    """Read chromium's stderr to its end (keeping the last lines); started with the
    DevTools websocket address it announces."""
    buffer = b""
    announced = False
    while chunk := await stream.receive_some(65536):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if not announced and line.startswith("DevTools listening on "):
                announced = True
                task_status.started(line.removeprefix("DevTools listening on ").strip())
    if not announced:
        raise AssertionError("chromium exited without a DevTools address:\n" + "\n".join(lines))


@asynccontextmanager
async def open_browser(executable: str, profile: Path) -> AsyncIterator[Browser]:
    """Headless chromium with its own profile, in its own process group, killed on exit."""
    process = await trio.lowlevel.open_process(
        [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    lines: deque[str] = deque(maxlen=200)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stderr is not None
            with trio.fail_after(START_TIMEOUT):
                url = await nursery.start(_devtools_url, process.stderr, lines)
            async with open_websocket_url(url, max_message_size=64 << 20) as ws:
                browser = Browser(ws)
                nursery.start_soon(browser.pump)
                yield browser
            nursery.cancel_scope.cancel()
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with trio.move_on_after(10) as waited, trio.CancelScope(shield=True):
            await process.wait()
        assert not waited.cancelled_caught, "chromium did not exit after SIGKILL"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def query(selector: str) -> str:
    """A JS expression: the first element matching the CSS ``selector``, or null."""
    return f"document.querySelector({json.dumps(selector)})"


def row(root: str, recipient: str, state: str, codes: str | None = None) -> str:
    """A JS expression: the outgoing row of ``root`` to ``recipient`` in ``state`` (and
    with status trail ``codes``), or null."""
    selector = f'#outgoing tr[data-root="{root}"][data-recipient="{recipient}"]'
    selector += f'[data-state="{state}"]'
    if codes is not None:
        selector += f' .trail[data-codes="{codes}"]'
    return query(selector)


# -- tests -----------------------------------------------------------------------------------


async def test_dashboard_in_chromium_follows_a_document_to_its_receipt_and_status_trail(
    tmp_path: Path, chromium: str
) -> None:
    ca = make_ca(tmp_path / "ca")
    # Hà Nam is configured as a peer but never started: its delivery waits for a retry.
    make_nodes(tmp_path, ca, [GOV, QUANG_NINH, HA_NAM])
    attachment = tmp_path / "cong-van.pdf"
    attachment.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 400)
    with trio.fail_after(150):
        async with (
            running(settings_of(tmp_path, GOV), settings_of(tmp_path, QUANG_NINH)) as (gov, qn),
            open_browser(chromium, tmp_path / "profile") as browser,
        ):
            page = await browser.new_page(timezone="Asia/Ho_Chi_Minh")

            # Without a token the page asks for one, and says when the node refuses it.
            await page.goto(f"{gov.api_url}/dashboard")
            await page.wait_for("!document.getElementById('login').hidden")
            assert await page.evaluate("document.getElementById('board').hidden") is True
            submit_token = (
                "(() => { document.getElementById('token-input').value = %s;"
                " document.getElementById('login-form').requestSubmit(); return true; })()"
            )
            await page.evaluate(submit_token % json.dumps("not-the-token"))
            await page.wait_for(
                "document.getElementById('login-error').textContent.includes('refused')"
            )
            assert await page.evaluate("sessionStorage.length") == 0
            await page.evaluate(submit_token % json.dumps(gov.token))
            await page.wait_for(
                f"document.getElementById('node').innerText.includes('{GOV}')"
                " && document.getElementById('live').dataset.state === 'up'"
            )
            assert "No document sent yet." in await page.text("#outgoing")
            peers = await page.text("#peers")
            assert HA_NAM in peers and QUANG_NINH in peers and "not connected" in peers

            # A document is submitted while the page is open: it follows without reloading.
            sent = await call(
                client(gov).submit,
                metadata(subject=SUBJECT, to=[{"code": QUANG_NINH, "name": QN_NAME}, HA_NAM]),
                [attachment],
                names=["công văn.pdf"],
            )
            assert sent.status == 202, sent.body
            root = sent.json()["root"]
            document_id = sent.json()["document_id"]
            await page.wait_for(row(root, QUANG_NINH, "delivered", "01"))
            await page.wait_for(row(root, HA_NAM, "retry-wait"))
            waiting = await page.text(f'#outgoing tr[data-recipient="{HA_NAM}"] td.delivery')
            assert "next attempt" in waiting and "last error:" in waiting, waiting

            for code, name in (("03", "Nguyễn Thị Lan"), ("04", "Trần Văn Hùng")):
                posted = await call(
                    client(qn).post,
                    f"/api/v1/inbox/{root}/status",
                    {"code": code, "staff": {"name": name, "department": "Văn thư"}},
                )
                assert posted.status == 200, posted.body
            await page.wait_for(row(root, QUANG_NINH, "delivered", "01 03 04"))

            delivered = await page.text(f'#outgoing tr[data-recipient="{QUANG_NINH}"]')
            assert document_id in delivered and QN_NAME in delivered
            assert "receipt" in delivered
            assert "accepted" in delivered and "Đã tiếp nhận" in delivered
            assert "assigned" in delivered and "Phân công" in delivered
            assert "Trần Văn Hùng, Văn thư" in delivered
            # Every data value is text: the subject's markup is shown, not obeyed.
            outgoing = await page.text("#outgoing")
            assert SUBJECT in outgoing
            assert await page.evaluate("document.querySelectorAll('#outgoing b, img').length") == 0
            # Times are the browser's local time (here Vietnam's), as dd/MM/yyyy HH:mm:ss.
            detail = (await call(client(gov).get, f"/api/v1/outbox/{root}")).json()
            receipt_ms = detail["deliveries"][QUANG_NINH]["receipt"]["received_at"]
            local = dt.datetime.fromtimestamp(receipt_ms / 1000, VIETNAM)
            assert f"receipt {local:%d/%m/%Y %H:%M:%S}" in delivered, delivered
            assert "Times are local (UTC+07:00)" in await page.text("#clock-note")
            # No error so far; then Trusted Types: the page cannot parse HTML even when asked.
            assert browser.errors == []
            assert (
                await page.evaluate(
                    "(() => { try { document.body.innerHTML = '<b>x</b>'; return 'parsed'; }"
                    " catch (e) { return e.name; } })()"
                )
                == "TypeError"
            )
            assert browser.errors and all("TrustedHTML" in e for e in browser.errors)
            browser.errors.clear()
            node = await page.text("#node")
            assert gov.node is not None
            assert str(gov.node.peer) in node and "current" in node

            shot = await page.screenshot(tmp_path / "dashboard.png")
            width, height = png_size(shot)
            assert width == WIDTH and height >= HEIGHT
            assert len(shot) > 30_000, len(shot)

            # The recipient's dashboard, opened with the token in the fragment.
            inbox = await browser.new_page()
            await inbox.goto(f"{qn.api_url}/dashboard#token={qn.token}")
            incoming = f'#incoming tr[data-root="{root}"]'
            await inbox.wait_for(
                query(f'{incoming}[data-state="stored"] .trail[data-codes="01 03 04"]')
            )
            assert await inbox.evaluate("location.hash") == ""
            assert await inbox.evaluate("location.href") == f"{qn.api_url}/dashboard"
            assert await inbox.evaluate("sessionStorage.length") == 1
            text = await inbox.text(incoming)
            assert "Agency 000.00.00.G22" in text and GOV in text and document_id in text
            assert "not acknowledged" in text
            acked = await call(client(qn).request, "POST", f"/api/v1/inbox/{root}/ack")
            assert acked.status == 200
            await inbox.wait_for(query(f'{incoming}[data-state="acked"]'))

            # Neither page logged an error, a refused resource or a policy violation.
            assert browser.errors == []


async def test_dashboard_page_files_and_data(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    make_nodes(tmp_path, ca, [GOV, QUANG_NINH])
    with trio.fail_after(60):
        async with running(settings_of(tmp_path, GOV)) as (gov,):
            api = client(gov)
            page = await call(api.request, "GET", "/dashboard", token="")
            assert page.status == 200
            policy = page.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert "unsafe" not in policy and "require-trusted-types-for 'script'" in policy
            assert page.headers["x-frame-options"] == "DENY"
            body = page.body.decode()
            assert "Agency 000.00.00.G22" in body and "set-cookie" not in page.headers
            for name, kind in ASSETS.items():
                served = await call(api.request, "GET", f"/dashboard/assets/{name}", token="")
                assert served.status == 200 and served.headers["content-type"] == kind
                assert served.body == (ROOT / "node" / "static" / name).read_bytes()
            assert_error(
                await call(api.request, "GET", "/dashboard/assets/..%2Fapi.py", token=""),
                404,
                "not_found",
            )
            assert_error(
                await call(api.request, "GET", "/api/v1/dashboard", token=""), 401, "unauthorized"
            )
            assert_error(await call(api.get, "/api/v1/dashboard", limit=0), 400, "invalid_field")
            data = (await call(api.get, "/api/v1/dashboard")).json()
            assert data["node"]["agency"] == GOV and data["outgoing"] == []
            assert data["names"] == {GOV: "Agency 000.00.00.G22"}
            assert data["status_codes"]["06"] == {
                "short": "completed",
                "en": "completed",
                "vi": "Hoàn thành",
            }
            assert data["status_codes"]["04"]["en"] == "assigned by a leader"
            assert data["events"]["boot"] == gov.desk.activity.boot  # type: ignore[union-attr]
            assert [p["agency"] for p in data["peers"]] == [QUANG_NINH]


def test_the_dashboard_files_are_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["p2pdoc_node"]
    static = ROOT / "node" / "static"
    files = sorted(p.relative_to(ROOT / "node").as_posix() for p in static.iterdir())
    assert sorted(f"static/{name}" for name in ASSETS) == files
    for name in files:
        assert any(fnmatch(name, pattern) for pattern in patterns), name
