"""``p2pdoc-node demo``: a national hierarchy on this machine, exchanging real documents.

What it runs, all on 127.0.0.1, each node with its own data directory (SQLite store, keys),
libp2p port and HTTP API: a national root CA and a sub-CA per province; the Government Office
(000.00.00.G22); two provinces (Quảng Ninh 000.00.00.H49, Hà Nam 000.00.00.H35); a district
under each and a commune under each district. Every node is a full
:class:`~p2pdoc_node.daemon.Daemon`, set up with the same library calls as ``init --ca``.

What happens: the Government Office sends a signed directive with two attachments to both
provinces; each recipient's clerk registers it and reports statuses 03, 04, 05 as it goes;
each province sends its own implementing directive (``response_for`` the one it got) to its
district, each district to its commune; each commune sends a report back up, which each level
answers with its own report to its parent, and every directive is finally reported 06
(completed). Receipts and status trails are printed as they arrive at each sender; then the
nodes keep running (open a dashboard, call the API) until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

import trio

from p2pdoc.model.ids import AgencyCode

from .config import CONFIG_FILE, load_settings
from .daemon import Daemon
from .datadir import InitOptions, add_peer, init_data_dir
from .desk import Desk, Json
from .logs import setup_logging
from .pki import CaDirectory
from .uploads import SpooledFile

__all__ = ["AGENCIES", "free_ports", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoAgency:
    code: str
    name: str
    short: str
    parent: str | None


AGENCIES: Final = (
    DemoAgency("000.00.00.G22", "Văn phòng Chính phủ", "VPCP", None),
    DemoAgency("000.00.00.H49", "UBND tỉnh Quảng Ninh", "UBND-QN", "000.00.00.G22"),
    DemoAgency("000.00.00.H35", "UBND tỉnh Hà Nam", "UBND-HNa", "000.00.00.G22"),
    DemoAgency("000.00.05.H49", "UBND huyện Vân Đồn", "UBND-VĐ", "000.00.00.H49"),
    DemoAgency("000.00.03.H35", "UBND huyện Kim Bảng", "UBND-KB", "000.00.00.H35"),
    DemoAgency("001.00.05.H49", "UBND xã Quan Lạn", "UBND-QL", "000.00.05.H49"),
    DemoAgency("007.00.03.H35", "UBND xã Thanh Sơn", "UBND-TS", "000.00.03.H35"),
)
ROLES: Final = ("competent-signer", "organisation")
STAFF: Final = (
    ("03", "Nguyễn Thị Lan", "Văn thư", "tiếp nhận, vào sổ văn bản đến"),
    ("04", "Trần Văn Hùng", "Lãnh đạo", "giao phòng chuyên môn xử lý"),
    ("05", "Lê Minh Tuấn", "Phòng chuyên môn", "đang tổ chức triển khai"),
)


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (bound together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _sample_file(path: Path, size: int, seed: int, title: str) -> Path:
    """A stand-in attachment: a text header and deterministic filler."""
    rng = random.Random(seed)
    head = f"%PDF-1.7\n% {title}\n".encode()
    path.write_bytes(head + rng.randbytes(max(0, size - len(head))))
    return path


@dataclass(slots=True)
class _Node:
    agency: DemoAgency
    directory: Path
    port: int
    api_port: int
    peer: str = ""
    daemon: Daemon | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    directives: dict[str, str] = field(default_factory=dict)
    """sender agency -> root of the directive received from it."""


class _Demo:
    def __init__(self, base: Path, out: TextIO, *, base_port: int) -> None:
        self.base = base
        self.out = out
        self.base_port = base_port
        self.nodes: dict[str, _Node] = {}
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}
        self.reports_received: set[str] = set()
        self.completed: set[tuple[str, str]] = set()
        self.done = trio.Event()
        self.expected_completions = 0

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.out.write(f"[{elapsed:6.2f}s] {text}\n")
        self.out.flush()

    def short(self, code: str) -> str:
        node = self.nodes.get(code)
        return node.agency.short if node is not None else code

    def desk(self, code: str) -> Desk:
        daemon = self.nodes[code].daemon
        assert daemon is not None and daemon.desk is not None
        return daemon.desk

    # -- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        now = _dt.datetime.now(_dt.UTC)
        national = CaDirectory.create_root(
            self.base / "ca" / "national", name="Ban Cơ yếu Chính phủ (demo)", now=now
        )
        cas = {"G22": national}
        for top in ("000.00.00.H49", "000.00.00.H35"):
            cas[top[-3:]] = CaDirectory.create_sub(
                self.base / "ca" / top,
                national,
                agency=AgencyCode(top),
                name=f"CA {top}",
                now=now,
            )
        if self.base_port:
            ports = list(range(self.base_port, self.base_port + 2 * len(AGENCIES)))
        else:
            ports = free_ports(len(AGENCIES)) + [0] * len(AGENCIES)
        for i, agency in enumerate(AGENCIES):
            node = _Node(agency, self.base / agency.code, ports[i], ports[len(AGENCIES) + i])
            result = init_data_dir(
                InitOptions(
                    data_dir=node.directory,
                    agency=AgencyCode(agency.code),
                    name=agency.name,
                    listen_port=node.port,
                    api_port=node.api_port,
                    signer_roles=ROLES,
                    signer_name=f"Lãnh đạo {agency.short}",
                    signer_position="Chủ tịch" if agency.parent else "Bộ trưởng, Chủ nhiệm",
                    min_signatures=len(ROLES),
                ),
                ca=cas[agency.code[-3:]],
                now=now,
            )
            node.peer = str(result.peer)
            self.nodes[agency.code] = node
        for node in self.nodes.values():
            for other in self.nodes.values():
                if other is not node:
                    add_peer(
                        node.directory / CONFIG_FILE,
                        agency=other.agency.code,
                        peer=other.peer,
                        addrs=[f"/ip4/127.0.0.1/tcp/{other.port}"],
                    )
        files = self.base / "files"
        files.mkdir(exist_ok=True)
        self.files = {
            "chi-thi.pdf": _sample_file(files / "chi-thi.pdf", 180_000, 1, "Chỉ thị"),
            "phu-luc-ke-hoach.xlsx": _sample_file(
                files / "phu-luc-ke-hoach.xlsx", 1_300_000, 2, "Phụ lục"
            ),
            "ke-hoach-trien-khai.pdf": _sample_file(
                files / "ke-hoach-trien-khai.pdf", 90_000, 3, "Kế hoạch"
            ),
            "bao-cao.pdf": _sample_file(files / "bao-cao.pdf", 60_000, 4, "Báo cáo"),
        }

    # -- documents ----------------------------------------------------------------------

    async def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        *,
        subject: str,
        steering: int,
        files: Sequence[str],
        response_for: Sequence[str] = (),
    ) -> Json:
        node = self.nodes[sender]
        self.numbers[sender] = self.numbers.get(sender, 0) + 1
        number = 100 + self.numbers[sender]
        metadata = {
            "to": list(recipients),
            "number": number,
            "notation": f"{'CT' if steering == 1 else 'BC'}-{node.agency.short}",
            "promulgation_date": _dt.date.today().isoformat(),
            "promulgation_place": node.agency.name,
            "subject": subject,
            "signer": {"full_name": f"Lãnh đạo {node.agency.short}", "position": "Chủ tịch"},
            "document_type": {
                "code": 2 if steering == 1 else 5,
                "name": "Chỉ thị" if steering == 1 else "Báo cáo",
            },
            "steering_type": steering,
            "response_for": list(response_for),
        }
        spooled = [
            SpooledFile(
                name=name,
                media_type="application/pdf"
                if name.endswith(".pdf")
                else "application/vnd.ms-excel",
                path=self.files[name],
                size=self.files[name].stat().st_size,
            )
            for name in files
        ]
        result = await self.desk(sender).submit(json.dumps(metadata).encode(), spooled)
        size = sum(f.size for f in spooled)
        kind = "directive" if steering == 1 else "report"
        self.say(
            f"{self.short(sender)} -> {', '.join(self.short(r) for r in recipients)}: sent "
            f"{kind} {result['document_id']} ({len(files)} file(s), {size / 1e6:.2f} MB)"
        )
        return result

    async def clerk(self, code: str) -> None:
        """React to this node's arrivals as its clerks would, and print what reaches it."""
        desk = self.desk(code)
        me = self.short(code)
        trails: dict[tuple[str, str], list[str]] = {}
        last = 0
        while True:
            events = await desk.activity.wait(last, 3600)
            for event in events:
                last = int(str(event["seq"]))
                kind = event["kind"]
                if kind == "receipt":
                    self.say(
                        f"{me}: receipt from {self.short(str(event['recipient']))} for "
                        f"{event['root']!s:.20}... after {event['latency_seconds']:.2f} s"
                    )
                elif kind == "status.received":
                    report = event["report"]
                    assert isinstance(report, dict)
                    key = (str(event["root"]), str(event["reporter"]))
                    trail = trails.setdefault(key, [])
                    trail.append(str(report["code"]))
                    self.say(
                        f"{me}: status from {self.short(str(event['reporter']))} on "
                        f"{event['document_id']}: {' -> '.join(trail)} ({report['meaning']})"
                    )
                    if report["code"] == "06":
                        self.completed.add(key)
                        self._check_done()
                elif kind == "document.received":
                    self.say(
                        f"{me}: received {event['document_id']} from "
                        f"{self.short(str(event['sender']))}"
                    )
                    await self.handle(code, str(event["root"]))

    async def handle(self, code: str, root: str) -> None:
        desk = self.desk(code)
        detail = await desk.incoming_detail(root)
        envelope = detail["envelope"]
        assert isinstance(envelope, dict)
        await desk.ack(root)
        for status, name, department, note in STAFF:
            await desk.post_status(
                root,
                {
                    "code": status,
                    "staff": {"name": name, "department": department},
                    "description": note,
                },
            )
        sender = str(detail["sender"])
        document_id = str(detail["document_id"])
        node = self.nodes[code]
        children = [n for n in self.nodes.values() if n.agency.parent == code]
        if envelope["steering_type"] == 1:
            if children:
                await self.submit(
                    code,
                    [c.agency.code for c in children],
                    subject=f"Triển khai {document_id}",
                    steering=1,
                    files=["ke-hoach-trien-khai.pdf"],
                    response_for=[document_id],
                )
                node.directives[sender] = root
            else:
                await self.report_up(code, root, document_id, sender)
        else:
            await desk.post_status(root, {"code": "06", "description": "đã tổng hợp báo cáo"})
            directive = node.directives.get(node.agency.parent or "")
            if node.agency.parent is not None and directive is not None:
                await self.report_up(code, directive, None, node.agency.parent)
            elif node.agency.parent is None:
                self.reports_received.add(sender)
                self._check_done()

    async def report_up(
        self, code: str, directive_root: str, directive_id: str | None, parent: str
    ) -> None:
        desk = self.desk(code)
        if directive_id is None:
            detail = await desk.incoming_detail(directive_root)
            directive_id = str(detail["document_id"])
        await self.submit(
            code,
            [parent],
            subject=f"Báo cáo kết quả thực hiện {directive_id}",
            steering=2,
            files=["bao-cao.pdf"],
            response_for=[directive_id],
        )
        await desk.post_status(directive_root, {"code": "06", "description": "đã hoàn thành"})

    def _check_done(self) -> None:
        if (
            len(self.reports_received) == 2
            and len(self.completed) >= self.expected_completions
            and not self.done.is_set()
        ):
            self.done.set()

    # -- running ------------------------------------------------------------------------

    def print_nodes(self) -> None:
        self.out.write("\nnodes (API address, dashboard with its token, data directory):\n")
        for node in self.nodes.values():
            daemon = node.daemon
            assert daemon is not None
            self.out.write(
                f"  {node.agency.code}  {node.agency.name}\n"
                f"      API {daemon.api_url}  token {daemon.token}\n"
                f"      dashboard {daemon.api_url}/dashboard#token={daemon.token}\n"
                f"      data {node.directory}\n"
            )
        self.out.write("\n")
        self.out.flush()

    async def run(self, duration: float | None) -> None:
        self.say(f"setting up a national CA, 2 sub-CAs and {len(AGENCIES)} nodes in {self.base}")
        self.prepare()
        # Each directive (7 - 1 of them sent to 6 recipients) and each report (6) ends in 06.
        self.expected_completions = 12
        async with trio.open_nursery() as nursery:
            stop = trio.Event()

            async def on_signal() -> None:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        self.say("interrupted: stopping")
                        stop.set()
                        return

            nursery.start_soon(on_signal)
            if duration is not None:

                async def timer() -> None:
                    await trio.sleep(duration)
                    self.say(f"--duration {duration:g} s reached: stopping")
                    stop.set()

                nursery.start_soon(timer)
            async with trio.open_nursery() as nodes:
                for node in self.nodes.values():
                    node.daemon = await nodes.start(self._run_node, node)
                self.say(f"{len(self.nodes)} nodes running")
                self.print_nodes()

                async def finished() -> None:
                    await self.done.wait()
                    self.say(
                        "demo complete: directives went down to every commune, reports came "
                        "back up, every receipt arrived and every trail ends in 06"
                    )
                    self.say("the nodes keep running; press Ctrl-C to stop")

                # The clerks stop before the nodes do: none may call a node being stopped.
                async with trio.open_nursery() as clerks:
                    for code in self.nodes:
                        clerks.start_soon(self.clerk, code)
                    central = AGENCIES[0].code
                    clerks.start_soon(
                        self._first,
                        central,
                        [a.code for a in AGENCIES if a.parent == central],
                    )
                    clerks.start_soon(finished)
                    await stop.wait()
                    clerks.cancel_scope.cancel()
                for node in self.nodes.values():
                    if node.daemon is not None:
                        node.daemon.stop()
                with trio.move_on_after(10):
                    for node in self.nodes.values():
                        await node.stopped.wait()
                nodes.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
        self.say("all nodes stopped")

    async def _run_node(self, node: _Node, *, task_status: trio.TaskStatus[Daemon]) -> None:
        try:
            settings = load_settings(node.directory / CONFIG_FILE, env={})
            await Daemon(settings).run(task_status=task_status)
        finally:
            node.stopped.set()

    async def _first(self, central: str, provinces: list[str]) -> None:
        await self.submit(
            central,
            provinces,
            subject="Chỉ thị về việc triển khai trục liên thông văn bản quốc gia",
            steering=1,
            files=["chi-thi.pdf", "phu-luc-ke-hoach.xlsx"],
        )


def run_demo(
    directory: Path | None,
    *,
    duration: float | None = None,
    base_port: int = 0,
    keep: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the demo (see the module docstring); returns the exit status."""
    out = out or sys.stdout
    setup_logging("warning")
    temporary = directory is None
    base = Path(tempfile.mkdtemp(prefix="p2pdoc-demo-")) if directory is None else directory
    base = base.absolute()
    if not temporary and base.exists() and any(base.iterdir()):
        out.write(f"p2pdoc-node demo: {base} is not empty; name a new or empty directory\n")
        return 2
    base.mkdir(parents=True, exist_ok=True)
    demo = _Demo(base, out, base_port=base_port)
    try:
        trio.run(demo.run, duration)
    except KeyboardInterrupt:
        out.write("interrupted\n")
    finally:
        if temporary and not keep:
            with contextlib.suppress(OSError):
                shutil.rmtree(base)
            out.write(f"removed {base}\n")
        else:
            out.write(f"data kept in {base}\n")
        out.flush()
    return 0
