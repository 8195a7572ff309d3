"""The HTTP API in-process: on trio beside the node, bad input refused with the error shape
and nothing stored, the documented routes, metrics and the dashboard page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import trio
from p2pdoc_node.api import ApiLimits, build_app
from p2pdoc_node.client import ApiResponse
from p2pdoc_node.config import CONFIG_FILE, load_settings
from p2pdoc_node.daemon import Daemon
from p2pdoc_node.datadir import InitOptions, add_peer, init_data_dir
from p2pdoc_node.openapi import ROUTES
from p2pdoc_node.pki import read_certificates

from p2pdoc.model.ids import AgencyCode
from p2pdoc.trust.profile import parse_certificate

from .helpers import (
    GOV,
    HA_NAM,
    NOW,
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


async def stored(daemon: Daemon) -> tuple[object, ...]:
    """Everything a submission could have written."""
    store = daemon.store
    assert store is not None
    return (
        await store.block_count(),
        [d.root for d in await store.list_documents(limit=1000)],
        await store.list_records("daemon-sent"),
        await store.list_records("outbox"),
        sorted(p.name for p in daemon.settings.resolve("tmp").iterdir()),
    )


async def test_api_runs_on_trio_beside_the_node_and_delivers(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    make_nodes(tmp_path, ca, [GOV, QUANG_NINH])
    attachment = tmp_path / "phu-luc.pdf"
    attachment.write_bytes(bytes(range(256)) * 3000)
    with trio.fail_after(60):
        async with running(settings_of(tmp_path, GOV), settings_of(tmp_path, QUANG_NINH)) as (
            gov,
            qn,
        ):
            health = (await call(client(gov).get, "/api/v1/health")).json()
            # Served by Hypercorn inside this very trio run, next to the node's own tasks.
            assert health["runtime"] == {
                "async_library": "trio",
                "server": "hypercorn",
                "version": health["runtime"]["version"],
            }
            assert trio.lowlevel.current_root_task() is not None
            assert health["status"] == "ok" and health["agency"] == GOV
            assert health["directory"]["stale"] is False and health["directory"]["peers"] == 1

            sent = await call(
                client(gov).submit, metadata(QUANG_NINH), [attachment], names=["phụ lục 1.pdf"]
            )
            assert sent.status == 202, sent.body
            root = sent.json()["root"]
            again = await call(
                client(gov).submit, metadata(QUANG_NINH), [attachment], names=["phụ lục 1.pdf"]
            )
            assert again.json() == {
                **sent.json(),
                "resubmitted": True,
                "created_at": again.json()["created_at"],
            }

            page = (await call(client(qn).get, "/api/v1/inbox", wait=20)).json()
            assert [i["root"] for i in page["items"]] == [root]
            detail = (await call(client(qn).get, f"/api/v1/inbox/{root}")).json()
            assert detail["files"][0]["name"] == "phụ lục 1.pdf"
            assert detail["next_status"] == ["02", "03"]
            target = tmp_path / "downloaded.pdf"
            got = await call(
                client(qn).download,
                "/api/v1/inbox/" + root + "/files/ph%E1%BB%A5%20l%E1%BB%A5c%201.pdf",
                target,
            )
            assert got.status == 200 and target.read_bytes() == attachment.read_bytes()

            for code in ("03", "04"):
                posted = await call(
                    client(qn).post,
                    f"/api/v1/inbox/{root}/status",
                    {"code": code, "staff": {"name": "Lê Thị B", "department": "Văn thư"}},
                )
                assert posted.status == 200, posted.body
            refused = await call(client(qn).post, f"/api/v1/inbox/{root}/status", {"code": "01"})
            assert_error(refused, 409, "status_not_allowed", "code")
            acked = await call(client(qn).request, "POST", f"/api/v1/inbox/{root}/ack")
            assert acked.json()["state"] == "acked"
            assert (await call(client(qn).get, "/api/v1/inbox")).json()["items"] == []
            everything = (await call(client(qn).get, "/api/v1/inbox", state="all")).json()
            assert [(i["root"], i["state"]) for i in everything["items"]] == [(root, "acked")]

            # The sender follows the trail through the event feed, without polling.
            codes: list[str] = []
            last = 0
            while codes != ["01", "03", "04"]:
                feed = (await call(client(gov).get, "/api/v1/events", after=last, wait=20)).json()
                for event in feed["events"]:
                    last = event["seq"]
                    if event["kind"] == "status.received":
                        codes.append(event["report"]["code"])
            outgoing = (await call(client(gov).get, f"/api/v1/outbox/{root}")).json()
            delivery = outgoing["deliveries"][QUANG_NINH]
            assert outgoing["state"] == "delivered" and delivery["state"] == "delivered"
            assert delivery["history"][0]["state"] == "queued"
            assert delivery["history"][-1]["state"] == "delivered"
            assert delivery["receipt"]["files"] == [f["cid"] for f in outgoing["files"]]
            assert (
                delivery["status"]["codes"] == ["01", "03", "04"] and delivery["status"]["complete"]
            )
            receipts = (await call(client(gov).get, "/api/v1/receipts")).json()["items"]
            assert [(r["root"], r["recipient"]) for r in receipts] == [(root, QUANG_NINH)]
            peers = (await call(client(gov).get, "/api/v1/peers")).json()
            assert [(p["agency"], p["connected"]) for p in peers] == [(QUANG_NINH, True)]
            metrics = (await call(client(gov).get, "/metrics")).body.decode()
            assert "p2pdoc_documents_submitted_total 1.0" in metrics
            assert 'p2pdoc_deliveries_total{state="delivered"} 1.0' in metrics
            assert "p2pdoc_delivery_latency_seconds_count 1.0" in metrics
            assert 'p2pdoc_status_reports_total{direction="received"} 3.0' in metrics
            assert "p2pdoc_peers_connected 1.0" in metrics
            assert "p2pdoc_directory_age_seconds" in metrics


@pytest.fixture
def one_node(tmp_path: Path) -> Path:
    ca = make_ca(tmp_path / "ca")
    make_nodes(tmp_path, ca, [GOV, QUANG_NINH])
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7 test" * 100)
    return tmp_path


def multipart(parts: list[tuple[str, str | None, str, bytes]]) -> tuple[bytes, str]:
    """(name, filename, content type, data) parts as a multipart body and its content type."""
    boundary = "test-boundary-42"
    body = b""
    for name, filename, kind, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {kind}\r\n"
        body += head.encode() + b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def test_bad_requests_are_4xx_with_the_error_shape_and_store_nothing(one_node: Path) -> None:
    settings = load_settings(
        one_node / GOV / CONFIG_FILE, env={"P2PDOC_API_MAX_UPLOAD_BYTES": str(64 << 10)}
    )
    limit = settings.api.max_upload_bytes
    good = json.dumps(metadata(QUANG_NINH)).encode()
    QN = QUANG_NINH
    with trio.fail_after(60):
        async with running(settings) as (gov,):
            api = client(gov)
            before = await stored(gov)

            async def post(body: bytes, kind: str) -> ApiResponse:
                return await call(
                    api.request, "POST", "/api/v1/outbox", body=body, headers={"Content-Type": kind}
                )

            async def post_json(value: object) -> ApiResponse:
                return await post(json.dumps(value).encode(), "application/json")

            # A multipart body cut short: the metadata part, then an endless file part.
            opening = multipart([("metadata", None, "application/json", good)])[0][:-30]

            cases = [
                # malformed JSON, as a JSON body and as the metadata part
                (await post(b'{"to": [', "application/json"), 400, "malformed_json", None),
                (
                    await post(*multipart([("metadata", None, "application/json", b"{nope")])),
                    400, "malformed_json", None,
                ),
                # missing fields
                (await post_json({"to": [QUANG_NINH]}), 422, "missing_field", "number"),
                (
                    await post(*multipart([("file", "a.pdf", "application/pdf", b"x")])),
                    422, "missing_field", "metadata",
                ),
                # unknown and malformed agency codes, unknown fields, bad values
                (await post_json(metadata(QN, HA_NAM)), 422, "unknown_agency", "to[1]"),
                (await post_json(metadata("000.00.00.Q99x")), 422, "invalid_field", "to[0]"),
                (await post_json(metadata(QN, hue="red")), 422, "unknown_field", "hue"),
                (await post_json(metadata(QN, subject="")), 422, "invalid_field", "subject"),
                (await post_json(metadata(GOV)), 422, "invalid_field", "to[0]"),
                # a deadline no clock can hold, and one that is not positive
                (
                    await post_json(metadata(QN, deadline=10**400)),
                    422, "invalid_field", "deadline",
                ),
                (await post_json(metadata(QN, deadline=0)), 422, "invalid_field", "deadline"),
                # a file name the manifest refuses, a form field that is not a file
                (
                    await post(*multipart([
                        ("metadata", None, "application/json", good),
                        ("file", "../etc/passwd", "text/plain", b"x"),
                    ])),
                    422, "invalid_field", "files[0]",
                ),
                (
                    await post(*multipart([
                        ("metadata", None, "application/json", good),
                        ("comment", None, "text/plain", b"x"),
                    ])),
                    422, "unknown_field", "comment",
                ),
                # oversized: declared, and streamed without a length
                (await post(b"x" * (limit + 1), "application/json"), 413, "too_large", None),
                (
                    await call(
                        api.request, "POST", "/api/v1/outbox",
                        body=iter([opening] + [b"y" * (16 << 10)] * (limit // (16 << 10) + 2)),
                        headers={"Content-Type": multipart([])[1]},
                    ),
                    413, "too_large", None,
                ),
                # neither JSON nor multipart
                (await post(b"to=x", "text/plain"), 415, "unsupported_media_type", None),
                # wrong and missing token
                (
                    await call(
                        api.request, "POST", "/api/v1/outbox", json_body=metadata(QUANG_NINH),
                        token="wrong",
                    ),
                    401, "unauthorized", None,
                ),
                (
                    await call(api.request, "GET", "/api/v1/inbox", token=""),
                    401, "unauthorized", None,
                ),
                (await call(api.get, "/api/v1/inbox", limit="many"), 400, "invalid_field", "limit"),
                (await call(api.get, "/api/v1/inbox", state="yes"), 400, "invalid_field", "state"),
                (await call(api.get, "/api/v1/outbox/bafynotacid"), 404, "not_found", None),
                (await call(api.get, "/api/v1/nowhere"), 404, "not_found", None),
                (await call(api.request, "PUT", "/api/v1/outbox"), 405, "method_not_allowed", None),
            ]  # fmt: skip
            for response, status, code, field in cases:
                assert_error(response, status, code, field)
            assert await stored(gov) == before
            # ... and the same node still takes a good submission.
            accepted = await post(*multipart([
                ("metadata", None, "application/json", good),
                ("file", "a.pdf", "application/pdf", (one_node / "a.pdf").read_bytes()),
            ]))  # fmt: skip
            assert accepted.status == 202
            assert await stored(gov) != before


async def test_too_many_files_is_refused(one_node: Path) -> None:
    settings = settings_of(one_node, GOV)
    good = json.dumps(metadata(QUANG_NINH)).encode()
    parts: list[tuple[str, str | None, str, bytes]] = [("metadata", None, "application/json", good)]
    parts += [("file", f"f{i}.txt", "text/plain", b"x") for i in range(settings.api.max_files + 1)]
    with trio.fail_after(60):
        async with running(settings) as (gov,):
            before = await stored(gov)
            body, kind = multipart(parts)
            response = await call(
                client(gov).request, "POST", "/api/v1/outbox", body=body,
                headers={"Content-Type": kind},
            )  # fmt: skip
            assert_error(response, 413, "too_large")
            assert await stored(gov) == before


async def test_every_route_is_described_and_the_dashboard_lists_them(one_node: Path) -> None:
    with trio.fail_after(60):
        async with running(settings_of(one_node, GOV)) as (gov,):
            api = client(gov)
            spec = (await call(api.request, "GET", "/openapi.json", token="")).json()
            assert spec["openapi"].startswith("3.")
            assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
            assert gov.desk is not None
            app = build_app(gov.desk, token="t", limits=ApiLimits(), spool_dir=one_node)
            served = {
                (route.path, method.lower())  # type: ignore[attr-defined]
                for route in app.routes
                for method in route.methods or ()  # type: ignore[attr-defined]
                if method != "HEAD" and route.path != "/"  # type: ignore[attr-defined]
            }
            described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
            assert served == described
            assert set(spec["paths"]) == set(ROUTES)
            page = await call(api.request, "GET", "/dashboard", token="")
            assert page.status == 200 and page.headers["content-type"].startswith("text/html")
            for path in ROUTES:
                assert path in page.body.decode()
            metrics = await call(api.request, "GET", "/metrics", token="")
            assert_error(metrics, 401, "unauthorized")


async def test_unknown_methods_add_no_metric_series(one_node: Path) -> None:
    with trio.fail_after(60):
        async with running(settings_of(one_node, GOV)) as (gov,):
            api = client(gov)
            for n in range(3):
                response = await call(api.request, f"BREW{n}", f"/nowhere/{n}", token="")
                assert_error(response, 404, "not_found")
            metrics = (await call(api.get, "/metrics")).body.decode()
            assert "BREW" not in metrics
            assert 'method="other",route="(none)",status="404"} 3.0' in metrics


async def test_the_same_document_submitted_twice_at_once_is_listed_once(one_node: Path) -> None:
    good = json.dumps(metadata(QUANG_NINH)).encode()
    with trio.fail_after(60):
        async with running(settings_of(one_node, GOV)) as (gov,):
            desk = gov.desk
            assert desk is not None
            answers: list[dict[str, object]] = []

            async def submit() -> None:
                answers.append(await desk.submit(good, []))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit)
                nursery.start_soon(submit)
            assert sorted(a["resubmitted"] for a in answers) == [False, True]
            assert answers[0]["root"] == answers[1]["root"]
            listed = (await call(client(gov).get, "/api/v1/outbox")).json()["items"]
            assert [i["root"] for i in listed] == [answers[0]["root"]]


async def test_a_running_node_picks_up_added_peers_and_new_revocation_lists(
    tmp_path: Path,
) -> None:
    ca = make_ca(tmp_path / "ca")
    make_nodes(tmp_path, ca, [GOV])
    other = init_data_dir(
        InitOptions(data_dir=tmp_path / QUANG_NINH, agency=AgencyCode(QUANG_NINH), name="QN"),
        ca=ca,
        now=NOW,
    )
    settings = settings_of(tmp_path, GOV)
    with trio.fail_after(60):
        async with running(settings) as (gov,):
            api = client(gov)
            assert (await call(api.get, "/api/v1/peers")).json() == []
            assert (await call(api.get, "/api/v1/health")).json()["revocation_lists"] == []
            add_peer(
                settings.path,
                agency=QUANG_NINH,
                peer=str(other.peer),
                addrs=["/ip4/127.0.0.1/tcp/9"],
            )
            later = settings.mtime + 60  # whatever the file system's time resolution
            os.utime(settings.path, (later, later))
            chain = read_certificates(tmp_path / QUANG_NINH / "keys" / "node-chain.pem")
            ca.revoke([parse_certificate(chain[0]).serial], now=NOW)
            shutil.copyfile(ca.path / "crl.pem", settings.resolve("trust/crl") / "root.pem")
            gov.refresh()
            peers = (await call(api.get, "/api/v1/peers")).json()
            assert [(p["agency"], p["listed"]) for p in peers] == [(QUANG_NINH, True)]
            health = (await call(api.get, "/api/v1/health")).json()
            assert [crl["version"] for crl in health["revocation_lists"]] == [1]
            assert health["directory"]["peers"] == 1
