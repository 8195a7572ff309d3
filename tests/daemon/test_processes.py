"""End to end: three daemons as separate processes on 127.0.0.1, driven through the CLI and
the HTTP API; then an online backup restored into a fresh node that carries on."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from .helpers import GOV, HA_NAM, QUANG_NINH, free_ports
from .processes import Daemon, cli, events_until

pytestmark = pytest.mark.slow


def statuses(events: list[dict[str, Any]], root: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for event in events:
        if event["kind"] == "status.received" and event["root"] == root:
            out.setdefault(event["reporter"], []).append(event["report"]["code"])
    return out


def test_three_daemons_cli_and_api_then_backup_restore(tmp_path: Path) -> None:
    codes = [GOV, QUANG_NINH, HA_NAM]
    data = {code: tmp_path / code for code in codes}
    ports = free_ports(6)
    cli("ca", "init", tmp_path / "ca", "--name", "Ban Cơ yếu (test)")
    for i, code in enumerate(codes):
        cli(
            "init", "--data", data[code], "--agency", code, "--name", f"Cơ quan {code}",
            "--ca", tmp_path / "ca", "--listen-port", ports[i], "--api-port", ports[3 + i],
            "--signer-name", "Nguyễn Văn A",
        )  # fmt: skip
    info = {c: json.loads(cli("info", "--data", data[c], "--json").stdout) for c in codes}
    assert all(i["enrolled"] for i in info.values())
    for code in codes:
        for i, other in enumerate(codes):
            if other != code:
                cli(
                    "peer", "add", "--data", data[code], "--agency", other,
                    "--peer", info[other]["peer"], "--addr", f"/ip4/127.0.0.1/tcp/{ports[i]}",
                )  # fmt: skip
    big = tmp_path / "phu-luc.bin"
    big.write_bytes(bytes(range(251)) * 16_000)  # ~4 MB: several blocks, progress lines
    note = tmp_path / "cong-van.pdf"
    note.write_bytes(b"%PDF-1.7 cong van\n" * 500)

    daemons = {code: Daemon(data[code]) for code in codes}
    try:
        gov, qn, _ = (daemons[c].started() for c in codes)

        # The sender's software submits through the CLI, which shows upload progress and
        # follows the delivery to each receipt.
        sent = cli(
            "send", "--data", data[GOV], "--to", QUANG_NINH, "--to", HA_NAM, "--number", "7",
            "--notation", "VPCP-KSTT", "--subject", "Về việc thử nghiệm liên thông",
            "--signer-name", "Mai Tiến Dũng", "--wait", "60", "--json", big, note,
        )  # fmt: skip
        root = json.loads(sent.stdout.splitlines()[0])["root"]
        assert f"receipt from {QUANG_NINH}" in sent.stdout
        assert f"receipt from {HA_NAM}" in sent.stdout
        assert "upload:" in sent.stderr and "/s" in sent.stderr
        assert "MiB/s" in sent.stderr.splitlines()[-1]
        # Submitting it again (a retrying client) names the same document and reports the
        # deliveries already made instead of waiting for events that will not come.
        again = cli(
            "send", "--data", data[GOV], "--to", QUANG_NINH, "--to", HA_NAM, "--number", "7",
            "--notation", "VPCP-KSTT", "--subject", "Về việc thử nghiệm liên thông",
            "--signer-name", "Mai Tiến Dũng", "--wait", "20", "--json", big, note,
        )  # fmt: skip
        assert json.loads(again.stdout.splitlines()[0])["root"] == root
        assert f"{QUANG_NINH}: already delivered" in again.stdout
        assert f"{HA_NAM}: already delivered" in again.stdout

        # Quảng Ninh's software uses the HTTP API.
        page = qn.get("/api/v1/inbox", wait=30).json()
        assert [item["root"] for item in page["items"]] == [root]
        fetched = tmp_path / "fetched.bin"
        assert qn.download(f"/api/v1/inbox/{root}/files/phu-luc.bin", fetched).status == 200
        assert fetched.read_bytes() == big.read_bytes()
        assert qn.request("POST", f"/api/v1/inbox/{root}/ack").status == 200
        for code in ("03", "04"):
            posted = qn.post(
                f"/api/v1/inbox/{root}/status", {"code": code, "staff": {"name": "Lê Văn D"}}
            )
            assert posted.status == 200, posted.body

        # Hà Nam's clerk uses the CLI.
        assert root in cli("inbox", "--data", data[HA_NAM], "--wait", "30").stdout
        cli("inbox", "--data", data[HA_NAM], "--fetch", root, "--out", tmp_path / "hn")
        assert (tmp_path / "hn" / "cong-van.pdf").read_bytes() == note.read_bytes()
        cli("status", root, "--data", data[HA_NAM], "--post", "03", "--staff-name", "Trần Thị E",
            "--department", "Văn thư")  # fmt: skip
        cli("inbox", "--data", data[HA_NAM], "--ack", root)
        assert "(nothing)" in cli("inbox", "--data", data[HA_NAM]).stdout

        # The sender sees both trails.
        events_until(
            gov,
            lambda seen: (
                statuses(seen, root) == {QUANG_NINH: ["01", "03", "04"], HA_NAM: ["01", "03"]}
            ),
        )
        shown = cli("status", root, "--data", data[GOV]).stdout
        assert f"{QUANG_NINH}: 01 -> 03 -> 04" in shown and f"{HA_NAM}: 01 -> 03" in shown
        receipts = json.loads(cli("receipts", root, "--data", data[GOV], "--json").stdout)
        assert sorted(r["recipient"] for r in receipts) == [HA_NAM, QUANG_NINH]
        refused = cli("status", root, "--data", data[HA_NAM], "--post", "01", check=False)
        assert refused.returncode == 1 and "status_not_allowed" in refused.stderr

        # Online backup of Quảng Ninh while it runs; then it is lost and restored elsewhere.
        cli("backup", "--data", data[QUANG_NINH], "--out", tmp_path / "backup")
        assert daemons[QUANG_NINH].stop() == 0
        restored = tmp_path / "restored"
        cli("restore", "--data", restored, "--from", tmp_path / "backup")
        daemons["restored"] = Daemon(restored)
        qn2 = daemons["restored"].started()
        everything = qn2.get("/api/v1/inbox", state="all").json()["items"]
        assert [(i["root"], i["state"]) for i in everything] == [(root, "acked")]
        # It carries on: its trail continues, it receives and it sends.
        assert qn2.post(f"/api/v1/inbox/{root}/status", {"code": "05"}).status == 200
        later = {
            "to": [QUANG_NINH], "number": 8, "notation": "VPCP-KSTT",
            "promulgation_date": "2024-05-03", "subject": "Văn bản sau khôi phục",
            "signer": {"full_name": "Mai Tiến Dũng"},
        }  # fmt: skip
        second = gov.submit(later, [note]).json()["root"]
        assert [i["root"] for i in qn2.get("/api/v1/inbox", wait=30).json()["items"]] == [second]
        report = cli(
            "send", "--data", restored, "--to", GOV, "--number", "3", "--notation", "BC-UBND",
            "--subject", "Báo cáo", "--signer-name", "Cao Tường Huy", "--steering-type", "2",
            "--response-for", f"{GOV},2024/05/03,8/VPCP-KSTT", "--wait", "60", note,
        )  # fmt: skip
        assert f"receipt from {GOV}" in report.stdout
        events_until(gov, lambda seen: "05" in statuses(seen, root).get(QUANG_NINH, []))
        assert (
            f"{QUANG_NINH}: 01 -> 03 -> 04 -> 05" in cli("status", root, "--data", data[GOV]).stdout
        )

        for daemon in (daemons[GOV], daemons[HA_NAM], daemons["restored"]):
            assert daemon.stop(signal.SIGINT) == 0
        assert '"event": "stopped"' in daemons[GOV].log.rest()
    finally:
        for daemon in daemons.values():
            daemon.kill()


def test_a_node_that_cannot_start_exits_2_naming_the_problem(tmp_path: Path) -> None:
    # Initialised but never enrolled: the node has no certificate chain to run with.
    cli("init", "--data", tmp_path / "node", "--agency", GOV, "--name", "Văn phòng Chính phủ")
    done = cli("run", "--data", tmp_path / "node", check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("p2pdoc-node: configuration error: "), done.stderr
    assert "node-chain.pem" in done.stderr and "Traceback" not in done.stderr


def test_sighup_reloads_the_peers_at_once(tmp_path: Path) -> None:
    ports = free_ports(3)
    cli("ca", "init", tmp_path / "ca", "--name", "Ban Cơ yếu (test)")
    for i, code in enumerate((GOV, QUANG_NINH)):
        cli(
            "init", "--data", tmp_path / code, "--agency", code, "--name", code,
            "--ca", tmp_path / "ca",
            "--listen-port", ports[i], "--api-port", ports[2], "--signer-name", "Nguyễn Văn A",
        )  # fmt: skip
    other = json.loads(cli("info", "--data", tmp_path / QUANG_NINH, "--json").stdout)
    daemon = Daemon(tmp_path / GOV)
    try:
        api = daemon.started()
        assert api.get("/api/v1/peers").json() == []
        cli(
            "peer", "add", "--data", tmp_path / GOV, "--agency", QUANG_NINH,
            "--peer", other["peer"], "--addr", f"/ip4/127.0.0.1/tcp/{ports[1]}",
        )  # fmt: skip
        daemon.process.send_signal(signal.SIGHUP)  # no waiting for the reload interval
        daemon.log.expect('"event": "reload"')
        peers = api.get("/api/v1/peers").json()
        assert [(p["agency"], p["peer"]) for p in peers] == [(QUANG_NINH, other["peer"])]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
