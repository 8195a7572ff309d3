"""Simulation study: a directive from the Government to every commune of a province.

Builds a province like Hà Nam (the seeds mention 25 departments/districts and 116 communes;
scale it with --districts and --communes), on the in-memory network with latency, jitter and a
link-loss rate, under a virtual clock. The Government Office sends a signed directive with an
attachment to every district and commune at once while some district nodes are down for a
while. It prints, per run, how long delivery took (virtual time) and how many attempts it
needed. Every figure is a result of the production code: the nodes, the PKI, the protocol
and the stores are the real ones; only the wire and the clock are simulated.

    python examples/simulate_directive.py --districts 6 --communes 20 --loss 0.01 --seeds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics

import trio
import trio.testing

from p2pdoc import (
    AgencyCode,
    Envelope,
    Faults,
    FileSource,
    Mesh,
    Organization,
    OutboxState,
    SignerInfo,
    SteeringType,
)
from p2pdoc.simulation import EPOCH_MS

GOVERNMENT = AgencyCode("000.00.00.G22")
PROVINCE = AgencyCode("000.00.00.H35")


def agencies(districts: int, communes: int) -> list[AgencyCode]:
    """The province, its districts (level 2) and communes spread over the districts (level 4)."""
    codes = [PROVINCE]
    for d in range(1, districts + 1):
        codes.append(AgencyCode(f"000.00.{d:02d}.H35"))
    for c in range(1, communes + 1):
        district = (c - 1) % districts + 1
        codes.append(AgencyCode(f"{c:03d}.00.{district:02d}.H35"))
    return codes


async def run(
    seed: int, districts: int, communes: int, loss: float, outage: float
) -> dict[str, float]:
    mesh = Mesh(seed=seed, faults=Faults(latency=0.02, jitter=0.03, reset_probability=loss))
    government = mesh.add_agency(GOVERNMENT, "Văn phòng Chính phủ")
    recipients = agencies(districts, communes)
    for code in recipients:
        mesh.add_agency(code)
    async with mesh.run():
        down = [code for code in recipients if code.level == 2][: max(1, districts // 3)]
        for code in down:
            await mesh.crash(code)
        envelope = Envelope(
            sender=Organization(code=GOVERNMENT, name="Văn phòng Chính phủ"),
            recipients=tuple(Organization(code=code) for code in recipients),
            number=1,
            notation="CT-TTg",
            promulgation_date=dt.date(2019, 3, 12),
            subject="Chỉ thị về việc triển khai gửi, nhận văn bản điện tử",
            signer=SignerInfo(full_name="Nguyễn Xuân Phúc", position="Thủ tướng"),
            steering_type=SteeringType.DIRECTIVE,
        )
        attachment = FileSource("chi-thi.pdf", "application/pdf", bytes(range(256)) * 2048)
        node = mesh.node(government)
        document = await node.create_document(envelope, [attachment], signer=government.signers)
        start = trio.current_time()
        handle = await node.send(document)
        await trio.sleep(outage)
        for code in down:
            await mesh.start(code)
        entries = await handle.wait()
        elapsed = trio.current_time() - start
    delivered = [e for e in entries.values() if e.state is OutboxState.DELIVERED]
    latencies = sorted((e.updated_at - EPOCH_MS) / 1000 - start for e in delivered)
    return {
        "recipients": len(entries),
        "delivered": len(delivered),
        "all_done_s": elapsed,
        "median_s": statistics.median(latencies),
        "p90_s": latencies[int(0.9 * (len(latencies) - 1))],
        "attempts": sum(e.attempts for e in entries.values()),
        "resets": mesh.router.stats.random_resets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=6)
    parser.add_argument("--communes", type=int, default=20)
    parser.add_argument("--loss", type=float, default=0.01, help="chance a chunk breaks its link")
    parser.add_argument(
        "--outage", type=float, default=60.0, help="seconds some districts are down"
    )
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    columns = ("delivered", "median s", "p90 s", "all s", "attempts", "resets")
    widths = (10, 9, 7, 7, 9, 7)
    print(f"{'seed':>4} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for seed in range(args.seeds):
        result = trio.run(
            run, seed, args.districts, args.communes, args.loss, args.outage,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )  # fmt: skip
        r = result
        delivered = f"{r['delivered']:.0f}/{r['recipients']:.0f}"
        print(
            f"{seed:>4} {delivered:>10} {r['median_s']:>9.2f} {r['p90_s']:>7.2f} "
            f"{r['all_done_s']:>7.1f} {r['attempts']:>9.0f} {r['resets']:>7.0f}"
        )


if __name__ == "__main__":
    main()
