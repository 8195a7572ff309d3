"""``p2pdoc-node``: the command line of the node daemon.

Every command is a thin wrapper: ``init``, ``enrol``, ``ca`` and ``peer`` call
:mod:`p2pdoc_node.pki` and :mod:`p2pdoc_node.datadir`; ``run`` runs a
:class:`~p2pdoc_node.daemon.Daemon`; ``send``, ``inbox``, ``status`` and ``receipts`` talk to
the running daemon's HTTP API (like any document software); ``backup`` and ``restore`` copy
the data directory; ``demo`` runs a whole hierarchy on this machine.

Exit status: 0 success, 1 the operation failed (the API refused, a delivery failed, the node
is unreachable), 2 a usage or configuration error (the message names the key or file).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from p2pdoc.errors import ConfigError, InvalidValue, P2pdocError

if TYPE_CHECKING:
    from .client import ApiClient, ApiResponse
    from .config import Settings
    from .pki import CaDirectory

__all__ = ["main"]

PROG = "p2pdoc-node"


class _Failed(Exception):
    """Ends a command with exit status 1 after its message was printed."""


def _out(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("P2PDOC_DATA") or ".").absolute()


def _config_path(args: argparse.Namespace) -> Path:
    from .config import CONFIG_FILE

    if args.config:
        return Path(args.config).absolute()
    return _data_dir(args) / CONFIG_FILE


def _settings(args: argparse.Namespace) -> Settings:
    from .config import load_settings

    return load_settings(_config_path(args))


def _client(args: argparse.Namespace) -> ApiClient:
    from .client import client_for

    return client_for(_settings(args))


def _check(response: ApiResponse, what: str) -> Any:
    if response.ok:
        return response.json()
    error = response.error()
    field = f" [{error.get('field')}]" if error.get("field") else ""
    _out(
        sys.stderr,
        f"{PROG}: {what} refused ({response.status} {error.get('code')}){field}: "
        f"{error.get('message')}",
    )
    raise _Failed


def _passphrase_args(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        f"--{prefix}passphrase-env",
        metavar="VAR",
        default="",
        help="environment variable holding the key passphrase",
    )
    group.add_argument(
        f"--{prefix}passphrase-file",
        metavar="FILE",
        default="",
        help="file whose first line is the key passphrase",
    )


def _read_passphrase(env_name: str, file: str, what: str) -> str | None:
    from .pki import read_passphrase

    return read_passphrase(env_name, Path(file) if file else None, what=what)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _fmt_ms(ms: object) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


class _Progress:
    """Bytes and rate on standard error: one updating line on a terminal, else a line per
    second and a final one."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        from .client import RateMeter

        self.label = label
        self.stream = stream
        self.meter = RateMeter()
        self.tty = stream.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < (0.1 if self.tty else 1.0):
            return
        self.last = now
        line = f"{self.label}: {self.meter.line(done, total)}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
            self.stream.flush()
        else:
            _out(self.stream, line)


# -- init, enrol, peers, info, config -----------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from p2pdoc.model.ids import AgencyCode

    from .datadir import InitOptions, init_data_dir
    from .pki import CaDirectory

    passphrase = _read_passphrase(args.passphrase_env, args.passphrase_file, "--passphrase")
    ca = None
    if args.ca:
        ca = CaDirectory.open(
            Path(args.ca),
            passphrase=_read_passphrase(
                args.ca_passphrase_env, args.ca_passphrase_file, "--ca-passphrase"
            ),
        )
    result = init_data_dir(
        InitOptions(
            data_dir=_data_dir(args),
            agency=AgencyCode(args.agency),
            name=args.name,
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            api_port=args.api_port,
            signer_roles=tuple(args.signer_role or ["competent-signer"]),
            signer_name=args.signer_name,
            signer_position=args.signer_position,
            passphrase=passphrase,
            passphrase_env=args.passphrase_env,
            passphrase_file=str(Path(args.passphrase_file).absolute())
            if args.passphrase_file
            else "",
            min_signatures=args.min_signatures,
        ),
        ca=ca,
        now=_now(),
    )
    _out(sys.stdout, f"initialised {result.config.parent}")
    _out(sys.stdout, f"  agency   {args.agency}")
    _out(sys.stdout, f"  peer ID  {result.peer}")
    _out(sys.stdout, f"  config   {result.config}")
    if result.enrolled:
        _out(sys.stdout, f"  enrolled with the CA in {args.ca}: certificates installed")
    else:
        _out(sys.stdout, "  enrolment requests for your CA:")
        for path in result.requests:
            _out(sys.stdout, f"    {path}")
        _out(
            sys.stdout,
            f"  then: {PROG} enrol --data {result.config.parent} --ca <CA directory>, or have "
            "the CA run 'ca issue' on each request and install the chains and root.pem",
        )
    return 0


def cmd_enrol(args: argparse.Namespace) -> int:
    from .datadir import enrol
    from .pki import CaDirectory

    settings = _settings(args)
    ca = CaDirectory.open(
        Path(args.ca),
        passphrase=_read_passphrase(
            args.ca_passphrase_env, args.ca_passphrase_file, "--ca-passphrase"
        ),
    )
    for path in enrol(settings, ca, now=_now()):
        _out(sys.stdout, f"installed {path}")
    return 0


def cmd_peer_add(args: argparse.Namespace) -> int:
    from .datadir import add_peer

    add_peer(_config_path(args), agency=args.agency, peer=args.peer, addrs=args.addr)
    _out(sys.stdout, f"added peer {args.agency} ({args.peer})")
    return 0


def _identity_summary(settings: Settings) -> dict[str, object]:
    from p2pdoc.trust.profile import parse_certificate

    from .pki import NODE_CHAIN_FILE, read_certificates

    out: dict[str, object] = {
        "agency": settings.node.agency,
        "name": settings.node.name,
        "config": str(settings.path),
        "listen": f"/ip4/{settings.network.listen_host}/tcp/{settings.network.listen_port}",
        "api": f"http://{settings.api.listen_host}:{settings.api.listen_port}",
        "enrolled": False,
    }
    chain = settings.resolve(settings.identity.key_dir) / NODE_CHAIN_FILE
    if chain.exists():
        leaf = parse_certificate(read_certificates(chain)[0])
        out.update(
            peer=str(leaf.peer),
            enrolled=True,
            certificate_serial=f"{leaf.serial:x}",
            certificate_not_after=leaf.not_after.isoformat(),
        )
    else:
        from .pki import NODE_REQUEST_FILE, parse_request

        request = settings.resolve(settings.identity.key_dir) / NODE_REQUEST_FILE
        if request.exists():
            out["peer"] = str(parse_request(request.read_bytes()).peer)
    return out


def cmd_info(args: argparse.Namespace) -> int:
    info = _identity_summary(_settings(args))
    if args.json:
        _out(sys.stdout, json.dumps(info, indent=2, ensure_ascii=False))
    else:
        for key, value in info.items():
            _out(sys.stdout, f"{key:22} {value}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import reference_markdown

    if args.reference:
        _out(sys.stdout, reference_markdown())
        return 0
    settings = _settings(args)
    settings.node_config()
    _out(sys.stdout, f"{settings.path}: valid")
    if args.show:
        import dataclasses

        value = {
            name: dataclasses.asdict(getattr(settings, name))
            if dataclasses.is_dataclass(getattr(settings, name))
            else [dataclasses.asdict(x) for x in getattr(settings, name)]
            for name in (
                "node", "identity", "trust", "network", "api", "store", "delivery", "receive",
                "directory", "log", "metrics", "backup", "signers", "peers",
            )
        }  # fmt: skip
        _out(sys.stdout, json.dumps(value, indent=2, ensure_ascii=False))
    return 0


# -- ca -----------------------------------------------------------------------------------


def cmd_ca_init(args: argparse.Namespace) -> int:
    from p2pdoc.model.ids import AgencyCode

    from .pki import CaDirectory

    passphrase = _read_passphrase(args.passphrase_env, args.passphrase_file, "--passphrase")
    path = Path(args.dir)
    if args.parent:
        if not args.agency:
            raise ConfigError("--agency", "a sub-CA needs the level-1 agency code it serves")
        parent = CaDirectory.open(
            Path(args.parent),
            passphrase=_read_passphrase(
                args.parent_passphrase_env, args.parent_passphrase_file, "--parent-passphrase"
            ),
        )
        ca = CaDirectory.create_sub(
            path, parent, agency=AgencyCode(args.agency), name=args.name, now=_now(),
            passphrase=passphrase,
        )  # fmt: skip
        _out(sys.stdout, f"sub-CA for {args.agency} created in {path}")
    else:
        if args.agency:
            raise ConfigError("--agency", "the root CA is unconstrained; use --parent for a sub-CA")
        ca = CaDirectory.create_root(path, name=args.name, now=_now(), passphrase=passphrase)
        _out(sys.stdout, f"root CA created in {path}")
    _out(sys.stdout, f"  give nodes {ca.path / 'root.pem'}")
    return 0


def _open_ca(args: argparse.Namespace) -> CaDirectory:
    from .pki import CaDirectory

    return CaDirectory.open(
        Path(args.dir),
        passphrase=_read_passphrase(args.passphrase_env, args.passphrase_file, "--passphrase"),
    )


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from .pki import parse_request, write_pem_chain

    ca = _open_ca(args)
    request = parse_request(Path(args.request).read_bytes())
    chain, issued = ca.issue(request, now=_now(), lifetime=_dt.timedelta(days=args.days))
    out = Path(args.out) if args.out else Path(args.request).with_suffix(".pem")
    write_pem_chain(out, chain)
    _out(
        sys.stdout,
        f"issued {issued.kind} certificate {issued.serial:x} for {issued.agency} "
        f"({issued.subject}) until {issued.not_after}: {out}",
    )
    return 0


def cmd_ca_revoke(args: argparse.Namespace) -> int:
    from p2pdoc.trust.profile import parse_certificate

    from .pki import read_certificates

    ca = _open_ca(args)
    serials = [int(s, 16) for s in args.serial or []]
    for cert in args.cert or []:
        serials.append(parse_certificate(read_certificates(Path(cert))[0]).serial)
    crl = ca.revoke(serials, now=_now())
    _out(
        sys.stdout,
        f"revocation list version {crl.version} ({len(crl.revoked)} revoked) written to "
        f"{ca.path / 'crl.pem'}; copy it into each node's trust/crl/ directory",
    )
    return 0


def cmd_ca_list(args: argparse.Namespace) -> int:
    ca = _open_ca(args)
    revoked = ca.revocation_list()
    for issued in ca.register():
        flag = " REVOKED" if revoked is not None and revoked.is_revoked(issued.serial) else ""
        _out(
            sys.stdout,
            f"{issued.serial:x}  {issued.kind:6} {issued.agency:14} {issued.subject} "
            f"until {issued.not_after}{flag}",
        )
    return 0


# -- run ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    import trio

    from .daemon import Daemon
    from .logs import setup_logging

    settings = _settings(args)
    log_file = settings.resolve(settings.log.file) if settings.log.file else None
    setup_logging(
        args.log_level or settings.log.level, args.log_format or settings.log.format, log_file
    )

    async def run() -> None:
        daemon = Daemon(settings)
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                with trio.open_signal_receiver(*wanted) as signals:
                    async for signum in signals:
                        if signum == signal.SIGHUP:
                            daemon.reload()
                            continue
                        daemon.stop()
                        return

            nursery.start_soon(on_signal)
            await daemon.run()
            nursery.cancel_scope.cancel()

    trio.run(run)
    return 0


# -- the API clients: send, inbox, status, receipts -----------------------------------------


def _metadata(args: argparse.Namespace) -> dict[str, object]:
    value: dict[str, object] = {}
    if args.metadata:
        loaded = json.loads(Path(args.metadata).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ConfigError(args.metadata, "metadata must be a JSON object")
        value.update(loaded)
    if args.to:
        value["to"] = list(args.to)
    for name in ("number", "notation", "subject", "steering_type", "content", "deadline"):
        given = getattr(args, name)
        if given is not None:
            value[name] = given
    if args.date or "promulgation_date" not in value:
        value["promulgation_date"] = args.date or _dt.date.today().isoformat()
    if args.response_for:
        value["response_for"] = list(args.response_for)
    if args.signer_name or "signer" not in value:
        signer: dict[str, object] = {"full_name": args.signer_name or "(unnamed)"}
        if args.signer_position:
            signer["position"] = args.signer_position
        value["signer"] = signer
    return value


def cmd_send(args: argparse.Namespace) -> int:
    client = _client(args)
    files = [Path(f) for f in args.files]
    for path in files:
        if not path.is_file():
            raise ConfigError(str(path), "is not a file")
    before = client.get("/api/v1/events")
    last = int(before.json()["last"]) if before.ok else 0
    progress = _Progress("upload")
    started = time.monotonic()
    response = client.submit(_metadata(args), files, progress=progress)
    result = _check(response, "the submission")
    assert isinstance(result, dict)
    total = sum(p.stat().st_size for p in files)
    elapsed = max(1e-6, time.monotonic() - started)
    _out(
        sys.stderr,
        f"uploaded {len(files)} file(s), {total} bytes in {elapsed:.2f} s "
        f"({total / elapsed / (1 << 20):.1f} MiB/s)",
    )
    if args.json:
        _out(sys.stdout, json.dumps(result, ensure_ascii=False))
    else:
        _out(sys.stdout, f"queued {result['document_id']} root {result['root']}")
    if args.wait is None:
        return 0
    root, recipients = str(result["root"]), list(result["recipients"])
    failed: set[str] = set()
    if result.get("resubmitted"):
        # Sent before: recipients that finished then send no new events.
        detail = _check(client.get(f"/api/v1/outbox/{root}"), "the outbox")
        assert isinstance(detail, dict)
        for recipient, delivery in dict(detail["deliveries"]).items():
            state = str(delivery.get("state"))
            if state in ("delivered", "failed"):
                recipients.remove(recipient)
                _out(sys.stdout, f"{recipient}: already {state}")
                if state == "failed":
                    failed.add(recipient)
    code = _follow_delivery(client, root, recipients, last, args.wait)
    return 1 if failed else code


def _follow_delivery(
    client: ApiClient, root: str, recipients: list[str], last: int, timeout: float
) -> int:
    pending = set(recipients)
    failed = set()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        wait = min(30.0, max(0.0, deadline - time.monotonic()))
        response = client.get("/api/v1/events", after=last, wait=round(wait, 1))
        body = _check(response, "the event feed")
        assert isinstance(body, dict)
        for event in body["events"]:
            last = max(last, int(event["seq"]))
            if event.get("root") != root:
                continue
            recipient = str(event.get("recipient", ""))
            if event["kind"] == "receipt":
                pending.discard(recipient)
                _out(
                    sys.stdout,
                    f"receipt from {recipient} after {event.get('latency_seconds', 0):.2f} s",
                )
            elif event["kind"] == "delivery.failed":
                pending.discard(recipient)
                failed.add(recipient)
                _out(sys.stdout, f"delivery to {recipient} FAILED: {event.get('last_error')}")
            elif event["kind"] == "delivery":
                note = f" ({event['last_error']})" if event.get("last_error") else ""
                _out(sys.stdout, f"{recipient}: {event['state']}{note}")
    if pending:
        _out(sys.stdout, f"still waiting for {', '.join(sorted(pending))}")
        return 1
    return 1 if failed else 0


def cmd_inbox(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.ack:
        _check(client.request("POST", f"/api/v1/inbox/{args.ack}/ack"), "the acknowledgement")
        _out(sys.stdout, f"acknowledged {args.ack}")
        return 0
    if args.show or args.fetch:
        root = args.show or args.fetch
        detail = _check(client.get(f"/api/v1/inbox/{root}"), "the inbox")
        assert isinstance(detail, dict)
        if args.fetch:
            target = Path(args.out or ".")
            target.mkdir(parents=True, exist_ok=True)
            for entry in detail["files"]:
                name = str(entry["name"])
                from urllib.parse import quote

                response = client.download(
                    f"/api/v1/inbox/{root}/files/{quote(name)}",
                    target / name,
                    progress=_Progress(f"download {name}"),
                )
                _check(response, "the download")
                _out(sys.stdout, f"saved {target / name} ({entry['size']} bytes)")
            return 0
        _out(sys.stdout, json.dumps(detail, indent=2, ensure_ascii=False))
        return 0
    params: dict[str, object] = {"state": "all" if args.all else "stored"}
    if args.wait:
        params["wait"] = args.wait
    page = _check(client.get("/api/v1/inbox", **params), "the inbox")
    assert isinstance(page, dict)
    if args.json:
        _out(sys.stdout, json.dumps(page, ensure_ascii=False))
        return 0
    for item in page["items"]:
        _out(
            sys.stdout,
            f"{item['root']}  {item['state']:7} {_fmt_ms(item['received_at'])}  from "
            f"{item['sender']}  {item['document_id']}  {item['subject']}",
        )
    if not page["items"]:
        _out(sys.stdout, "(nothing)")
    return 0


def _print_trail(agency: str, trail: Any) -> None:
    reports = trail.get("reports") or []
    complete = "" if trail.get("complete", True) else " (INCOMPLETE)"
    _out(sys.stdout, f"  {agency}: {' -> '.join(map(str, trail.get('codes', [])))}{complete}")
    for report in reports:
        staff = report["staff"]
        who = ", ".join(v for v in (staff["name"], staff["department"]) if v)
        _out(
            sys.stdout,
            f"    {report['seq']:>2}. {report['code']} {report['meaning']}  "
            f"{_fmt_ms(report['at'])}{'  ' + who if who else ''}"
            f"{'  ' + report['description'] if report['description'] else ''}",
        )


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    root = args.root
    if args.post:
        value: dict[str, object] = {"code": args.post}
        staff = {
            k: v
            for k, v in (
                ("name", args.staff_name),
                ("department", args.department),
                ("contact", args.contact),
            )
            if v
        }
        if staff:
            value["staff"] = staff
        if args.description:
            value["description"] = args.description
        result = _check(client.post(f"/api/v1/inbox/{root}/status", value), "the status")
        assert isinstance(result, dict)
        report = result["report"]
        _out(sys.stdout, f"reported {report['code']} ({report['meaning']}) on {root}")
        return 0
    response = client.get(f"/api/v1/outbox/{root}")
    if response.status == 404:
        detail = _check(client.get(f"/api/v1/inbox/{root}"), "the status")
        assert isinstance(detail, dict)
        if args.json:
            _out(sys.stdout, json.dumps(detail["status"], ensure_ascii=False))
            return 0
        _out(sys.stdout, f"{detail['document_id']} (received from {detail['sender']}):")
        _print_trail("reported here", detail["status"])
        return 0
    detail = _check(response, "the status")
    assert isinstance(detail, dict)
    if args.json:
        _out(sys.stdout, json.dumps(detail["deliveries"], ensure_ascii=False))
        return 0
    _out(sys.stdout, f"{detail['document_id']} ({detail['state']}):")
    for agency, delivery in detail["deliveries"].items():
        _out(sys.stdout, f"  {agency}: delivery {delivery['state']}")
        if "status" in delivery:
            _print_trail(agency, delivery["status"])
    return 0


def cmd_receipts(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.root:
        body = _check(client.get(f"/api/v1/outbox/{args.root}/receipts"), "the receipts")
        assert isinstance(body, dict)
        items = [{"root": args.root, **r} for r in body["receipts"]]
    else:
        body = _check(client.get("/api/v1/receipts"), "the receipts")
        assert isinstance(body, dict)
        items = list(body["items"])
    if args.json:
        _out(sys.stdout, json.dumps(items, ensure_ascii=False))
        return 0
    for item in items:
        _out(
            sys.stdout,
            f"{item['root']}  {item['recipient']}  received {_fmt_ms(item['received_at'])}  "
            f"by node {item['node']}",
        )
    if not items:
        _out(sys.stdout, "(no receipts yet)")
    return 0


# -- backup, restore ------------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> int:
    import trio

    from .datadir import create_backup

    settings = _settings(args)
    info = _identity_summary(settings)
    started = time.monotonic()
    target = trio.run(
        functools.partial(
            create_backup,
            settings,
            Path(args.out),
            agency=str(info["agency"]),
            peer=str(info.get("peer", "")),
        )
    )
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    _out(
        sys.stdout,
        f"backup of {info['agency']} written to {target} ({size} bytes, "
        f"{time.monotonic() - started:.2f} s); it holds private keys: keep it safe",
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    import trio

    from .datadir import restore_backup

    settings = trio.run(restore_backup, Path(args.source), _data_dir(args))
    _out(
        sys.stdout,
        f"restored {settings.node.agency} into {settings.base}; start it with "
        f"{PROG} run --data {settings.base}",
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        Path(args.dir) if args.dir else None,
        duration=args.duration,
        base_port=args.base_port,
        keep=args.keep,
    )


# -- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-d",
        "--data",
        metavar="DIR",
        help="the node's data directory (default: $P2PDOC_DATA, else the current directory)",
    )
    common.add_argument(
        "-c", "--config", metavar="FILE", help="configuration file (default: DIR/p2pdoc-node.toml)"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The p2pdoc node daemon: exchanges signed documents between agencies.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        *,
        data: bool = True,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, parents=[common] if data else []
        )
        sub.set_defaults(handler=handler)
        return sub

    p = command("init", cmd_init, "create a data directory: keys, enrolment requests, config")
    p.add_argument("--agency", required=True, help="agency code, e.g. 000.00.00.G22")
    p.add_argument("--name", required=True, help="the agency's name")
    p.add_argument("--ca", metavar="CA_DIR", help="enrol at once with the CA in CA_DIR")
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=4001)
    p.add_argument("--api-port", type=int, default=8480)
    p.add_argument(
        "--signer-role",
        action="append",
        metavar="ROLE",
        help="a role an official signs in (repeatable; default competent-signer)",
    )
    p.add_argument("--signer-name", default="", help="the official's full name")
    p.add_argument("--signer-position", default="", help="the official's position")
    p.add_argument("--min-signatures", type=int, help="signatures a received document needs")
    _passphrase_args(p)
    _passphrase_args(p, "ca-")

    p = command("enrol", cmd_enrol, "have a local CA certify this node and its officials")
    p.add_argument("--ca", metavar="CA_DIR", required=True)
    _passphrase_args(p, "ca-")

    ca = commands.add_parser("ca", help="certificate authority operations")
    ca_commands = ca.add_subparsers(dest="ca_command", required=True, metavar="CA_COMMAND")

    def ca_command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = ca_commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("dir", metavar="CA_DIR", help="the CA's directory")
        _passphrase_args(sub)
        return sub

    p = ca_command("init", cmd_ca_init, "create the root CA, or a sub-CA with --parent")
    p.add_argument("--name", required=True, help="the CA's name")
    p.add_argument("--agency", help="a sub-CA's level-1 agency code (its subtree)")
    p.add_argument("--parent", metavar="PARENT_CA_DIR", help="the CA certifying this sub-CA")
    _passphrase_args(p, "parent-")
    p = ca_command("issue", cmd_ca_issue, "certify a node's or an official's enrolment request")
    p.add_argument("request", metavar="REQUEST.csr")
    p.add_argument("--out", metavar="CHAIN.pem", help="default: the request's name with .pem")
    p.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    p = ca_command("revoke", cmd_ca_revoke, "revoke certificates; writes CA_DIR/crl.pem")
    p.add_argument("--serial", action="append", metavar="HEX", help="serial number (repeatable)")
    p.add_argument("--cert", action="append", metavar="FILE", help="certificate file (repeatable)")
    ca_command("list", cmd_ca_list, "list what the CA issued")

    peer = commands.add_parser("peer", help="the configured peer list")
    peer_commands = peer.add_subparsers(dest="peer_command", required=True, metavar="PEER_COMMAND")
    p = peer_commands.add_parser("add", help="add a peer to the configuration", parents=[common])
    p.set_defaults(handler=cmd_peer_add)
    p.add_argument("--agency", required=True)
    p.add_argument("--peer", required=True, help="its peer ID")
    p.add_argument("--addr", action="append", required=True, help="/ip4/<address>/tcp/<port>")

    p = command("info", cmd_info, "this node's agency, peer ID and addresses")
    p.add_argument("--json", action="store_true")
    p = command("config", cmd_config, "check the configuration (or print its reference)")
    p.add_argument("--show", action="store_true", help="print the effective configuration")
    p.add_argument("--reference", action="store_true", help="print every key (Markdown)")

    p = command(
        "run", cmd_run, "run the node (until SIGINT or SIGTERM; SIGHUP reloads peers and lists)"
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"])

    p = command("send", cmd_send, "submit a document to the running node")
    p.add_argument("files", nargs="*", metavar="FILE", help="attachments")
    p.add_argument("--to", action="append", metavar="CODE", help="recipient (repeatable)")
    p.add_argument("--number", type=int)
    p.add_argument("--notation")
    p.add_argument("--subject")
    p.add_argument("--date", help="promulgation date YYYY-MM-DD (default today)")
    p.add_argument("--signer-name")
    p.add_argument("--signer-position")
    p.add_argument("--steering-type", type=int)
    p.add_argument("--content")
    p.add_argument("--response-for", action="append", metavar="DOCUMENT_ID")
    p.add_argument("--deadline", type=float, help="seconds for each receipt to arrive")
    p.add_argument("--metadata", metavar="FILE.json", help="metadata JSON (options override it)")
    p.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=300.0,
        metavar="SECONDS",
        help="follow the delivery until every receipt arrived (default 300 s)",
    )
    p.add_argument("--json", action="store_true")

    p = command("inbox", cmd_inbox, "list, show, fetch or acknowledge received documents")
    p.add_argument("--all", action="store_true", help="acknowledged ones too")
    p.add_argument("--wait", type=float, help="wait up to SECONDS for a document")
    p.add_argument("--show", metavar="ROOT")
    p.add_argument("--fetch", metavar="ROOT", help="download the document's files")
    p.add_argument("--out", metavar="DIR", help="where --fetch saves (default .)")
    p.add_argument("--ack", metavar="ROOT")
    p.add_argument("--json", action="store_true")

    p = command("status", cmd_status, "show status trails, or report a status (--post)")
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--post", metavar="CODE", help="report 02, 03, 04, 05 or 06 to the sender")
    p.add_argument("--staff-name")
    p.add_argument("--department")
    p.add_argument("--contact")
    p.add_argument("--description")
    p.add_argument("--json", action="store_true")

    p = command("receipts", cmd_receipts, "receipts of sent documents")
    p.add_argument("root", nargs="?", metavar="ROOT")
    p.add_argument("--json", action="store_true")

    p = command("backup", cmd_backup, "online backup of the store, keys and configuration")
    p.add_argument("--out", required=True, metavar="DIR", help="a new directory")

    p = command("restore", cmd_restore, "restore a backup into a new data directory (--data)")
    p.add_argument("--from", dest="source", required=True, metavar="BACKUP_DIR")

    p = command(
        "demo",
        cmd_demo,
        "run a CA, a central node, two provinces, two districts and two communes here",
        data=False,
    )
    p.add_argument("--dir", help="where the nodes' data directories go (default: a temporary one)")
    p.add_argument("--duration", type=float, help="stop after SECONDS (default: at Ctrl-C)")
    p.add_argument("--base-port", type=int, default=0, help="first port (default: free ports)")
    p.add_argument("--keep", action="store_true", help="keep a temporary directory afterwards")
    return parser


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception in ``group`` and its nested groups, or None if there are more."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending and len(leaves) < 2:
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending += item.exceptions
        else:
            leaves.append(item)
    return leaves[0] if len(leaves) == 1 and not pending else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            return int(args.handler(args))
        except BaseExceptionGroup as group:
            # A failure inside a trio nursery (``run``, ``demo``) arrives wrapped: report
            # the one error itself, as any other command does.
            sole = _sole_exception(group)
            if sole is None:
                raise
            raise sole from None
    except _Failed:
        return 1
    except ConfigError as exc:
        _out(sys.stderr, f"{PROG}: configuration error: {exc}")
        return 2
    except InvalidValue as exc:
        _out(sys.stderr, f"{PROG}: error: {exc}")
        return 2
    except P2pdocError as exc:
        _out(sys.stderr, f"{PROG}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:
        _out(sys.stderr, f"{PROG}: error: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
