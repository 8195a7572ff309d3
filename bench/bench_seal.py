"""Sealing throughput: seal and open a large document against raw ChaCha20-Poly1305.

Measures, in one process, over ``--size-mb`` (default 100) MB of random bytes held in
memory and fed in ``--chunk-kib`` (default 1024) KiB pieces, as reads of a file would be:

- raw encrypt: ``ChaCha20Poly1305.encrypt`` over the same bytes cut into the same
  segments (256 KiB - 16 bytes of plaintext each), counter nonces: the primitive alone;
- seal: ``p2pdoc.trust.seal_stream`` (re-buffering into segments, STREAM nonces with the
  last-segment flag);
- raw decrypt and open: the same, the other way (``open_stream`` fed in the same pieces);
- key wrapping: ``DocumentSealer.seal`` for a document sealed to 1 and to 95 recipient
  node keys (X25519 + HKDF + key wrap per recipient, plus the sealed header).

Throughput figures are medians of ``--runs`` runs; the ratios (goal >= 0.7) are per run,
by wall clock and by process CPU time, then the median. The two sides of a pair run back
to back, alternating which goes first.

    python bench/bench_seal.py [--size-mb 100] [--runs 5] [--chunk-kib 1024]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pdoc.model import AgencyCode, Envelope, Organization, SignerInfo
from p2pdoc.trust import (
    AgreementKey,
    ContentKey,
    DocumentSealer,
    PlainFile,
    RecipientKey,
    open_stream,
    seal_stream,
)
from p2pdoc.trust.sealing import SEALED_SEGMENT_SIZE, SEGMENT_SIZE


def timed(action: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    chunk = args.chunk_kib * 1024
    data = os.urandom(size)
    view = memoryview(data)
    pieces = [view[i : i + chunk] for i in range(0, size, chunk)]
    key = ContentKey.generate()
    raw_key = ChaCha20Poly1305(os.urandom(32))

    sealed = list(seal_stream(pieces, key, file_index=0))
    sealed_view = memoryview(b"".join(sealed))
    sealed_pieces = [sealed_view[i : i + chunk] for i in range(0, len(sealed_view), chunk)]
    raw_sealed = [
        raw_key.encrypt(n.to_bytes(12, "big"), view[i : i + SEGMENT_SIZE], None)
        for n, i in enumerate(range(0, size, SEGMENT_SIZE))
    ]
    assert b"".join(open_stream(sealed_pieces, key, file_index=0)) == data

    def raw_encrypt() -> None:
        for n, i in enumerate(range(0, size, SEGMENT_SIZE)):
            raw_key.encrypt(n.to_bytes(12, "big"), view[i : i + SEGMENT_SIZE], None)

    def seal() -> None:
        for _ in seal_stream(pieces, key, file_index=0):
            pass

    def raw_decrypt() -> None:
        for n, segment in enumerate(raw_sealed):
            raw_key.decrypt(n.to_bytes(12, "big"), segment, None)

    def unseal() -> None:
        for _ in open_stream(sealed_pieces, key, file_index=0):
            pass

    results: dict[str, list[float]] = {}
    for run in range(args.runs):
        for name, ours, raw in (("seal", seal, raw_encrypt), ("open", unseal, raw_decrypt)):
            if run % 2:
                a, b = timed(ours), timed(raw)
            else:
                b, a = timed(raw), timed(ours)
            results.setdefault(f"{name} MB/s", []).append(size / 1e6 / a[0])
            results.setdefault(f"raw {name} MB/s", []).append(size / 1e6 / b[0])
            results.setdefault(f"{name} ratio wall", []).append(b[0] / a[0])
            results.setdefault(f"{name} ratio cpu", []).append(b[1] / a[1])

    print(
        f"{args.size_mb} MB, fed in {args.chunk_kib} KiB pieces, segments of "
        f"{SEALED_SEGMENT_SIZE} sealed bytes; medians of {args.runs} runs"
    )
    for name in ("seal", "open"):
        print(
            f"  {name:4}: p2pdoc {statistics.median(results[f'{name} MB/s']):7.0f} MB/s, raw "
            f"ChaCha20-Poly1305 {statistics.median(results[f'raw {name} MB/s']):7.0f} MB/s, "
            f"ratio {statistics.median(results[f'{name} ratio wall']):.3f} wall, "
            f"{statistics.median(results[f'{name} ratio cpu']):.3f} CPU (goal >= 0.7)"
        )

    envelope_for = {
        count: Envelope(
            sender=Organization(code=AgencyCode("000.00.00.G22")),
            recipients=tuple(
                Organization(code=AgencyCode(f"000.00.00.H{i + 1:02d}")) for i in range(count)
            ),
            number=1,
            notation="VPCP",
            promulgation_date=dt.date(2026, 3, 2),
            subject="Sealed directive",
            signer=SignerInfo(full_name="A"),
        )
        for count in (1, 95)
    }
    for count, envelope in envelope_for.items():
        recipients = [
            RecipientKey(r.code, AgreementKey.generate().public_bytes) for r in envelope.recipients
        ]
        times = []
        for _ in range(args.runs):
            sealer = DocumentSealer(recipients)
            wall, _ = timed(
                lambda s=sealer, e=envelope: s.seal(  # type: ignore[misc]
                    e, [PlainFile(name="a.pdf", media_type="application/pdf", size=1)]
                )
            )
            times.append(wall)
        print(
            f"  header sealing and key wrap for {count:3d} recipients: "
            f"{statistics.median(times) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
