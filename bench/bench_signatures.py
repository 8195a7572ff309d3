"""Document signature verification: cost per document, and verifies/s against raw Ed25519.

Measures, in one process, over a national PKI built at start (root, one province sub-CA,
six officials with Ed25519 keys):

1. **Per document**, for documents of 1, 20 and 200 appendices, each carrying 6 signatures
   (``--docs`` fresh documents per size, so no verification cache applies): the time to
   check the manifest block against its CID and parse it (this grows with the file list:
   hashing and parsing), to decode the signature set, and to verify the 6 signatures
   (which should not grow: each signature covers the root CID only). Also the cost of
   verifying the same document a second time with a :class:`VerificationCache`.
2. **Verifies per second**: ``verify_document_signatures`` over ``--docs`` documents x 6
   signatures (no cache; chain validation is cached per signer, as in a running node)
   against ``Ed25519PublicKey.verify`` of exactly the same signed bytes and signatures
   with the keys already loaded (the raw primitive). Rounds alternate between the two so
   that load from other processes hits both alike; figures are medians of ``--runs``
   rounds, and the ratio is taken per round by wall clock and by process CPU time.
   Goal: ratio >= 0.9.

    python bench/bench_signatures.py [--runs 7] [--docs 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ed25519

from p2pdoc.model import (
    AgencyCode,
    Cid,
    Envelope,
    FileEntry,
    Manifest,
    Multicodec,
    Organization,
    SignerInfo,
)
from p2pdoc.trust import (
    CertificateAuthority,
    DocumentRole,
    SignatureSet,
    SigningKey,
    TrustStore,
    VerificationCache,
    parse_certificate,
    sign_document,
    verify_document_signatures,
)

NOW = dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
PROVINCE = AgencyCode("000.00.00.H49")
ROLES = (
    DocumentRole.COMPETENT_SIGNER,
    DocumentRole.ORGANISATION,
    DocumentRole.NUMBER,
    DocumentRole.DATE,
    DocumentRole.APPENDIX,
    DocumentRole.APPROVAL,
)


def build_pki() -> tuple[TrustStore, list[tuple[SigningKey, tuple[bytes, ...]]]]:
    root = CertificateAuthority.create_root(name="Root", key=SigningKey.generate(), now=NOW)
    key = SigningKey.generate()
    province = CertificateAuthority(
        key,
        root.issue_sub_ca(agency=PROVINCE, name="Province", public_key=key.public_key, now=NOW),
    )
    signers = []
    for i in range(6):
        signer_key = SigningKey.generate()
        chain = province.issue_signer(
            agency=PROVINCE, full_name=f"Official {i}", public_key=signer_key.public_key, now=NOW
        )
        signers.append((signer_key, chain))
    return TrustStore([root.certificate]), signers


def make_document(
    number: int, appendices: int, signers: list[tuple[SigningKey, tuple[bytes, ...]]]
) -> tuple[Cid, bytes, bytes]:
    """A manifest with a main text and ``appendices`` appendices, and its 6 signatures."""
    files = tuple(
        FileEntry(
            name=f"file-{i:03d}.pdf",
            media_type="application/pdf",
            size=100_000 + i,
            cid=Cid.of(Multicodec.DAG_PB, f"{number}/{i}".encode()),
        )
        for i in range(appendices + 1)
    )
    envelope = Envelope(
        sender=Organization(code=PROVINCE, name="UBND tỉnh"),
        recipients=(Organization(code=AgencyCode("000.00.00.H41")),),
        number=number + 1,
        notation="UBND-VP",
        promulgation_date=dt.date(2026, 3, 2),
        subject="Về việc triển khai",
        signer=SignerInfo(full_name="Official 0"),
        appendixes=tuple(f"Phụ lục {i}" for i in range(min(appendices, 100))),
    )
    manifest = Manifest(envelope=envelope, files=files)
    block = manifest.encode()
    root = Cid.of(Multicodec.DAG_CBOR, block)
    signatures = SignatureSet(
        tuple(
            sign_document(root, role=role, key=key, chain=chain, now=NOW)
            for role, (key, chain) in zip(ROLES, signers, strict=True)
        )
    ).encode()
    return root, block, signatures


def per_document(
    trust: TrustStore, signers: list[tuple[SigningKey, tuple[bytes, ...]]], docs: int
) -> None:
    print("per document, 6 signatures (medians over documents, microseconds):")
    print(f"{'appendices':>10} {'manifest bytes':>14} {'hash+parse':>11} {'set decode':>10} "
          f"{'6 verifies':>10} {'total':>9} {'again, cached':>13}")  # fmt: skip
    for appendices in (1, 20, 200):
        documents = [make_document(n, appendices, signers) for n in range(docs)]
        parse, decode, verify, again = [], [], [], []
        cache = VerificationCache()
        for root, block, encoded in documents:
            t0 = time.perf_counter()
            Manifest.decode(block, expected=root)
            t1 = time.perf_counter()
            signature_set = SignatureSet.decode(encoded)
            t2 = time.perf_counter()
            verify_document_signatures(root, signature_set, trust=trust, now=NOW, cache=cache)
            t3 = time.perf_counter()
            verify_document_signatures(
                root, SignatureSet.decode(encoded), trust=trust, now=NOW, cache=cache
            )
            t4 = time.perf_counter()
            parse.append(t1 - t0)
            decode.append(t2 - t1)
            verify.append(t3 - t2)
            again.append(t4 - t3)
        med = [statistics.median(x) * 1e6 for x in (parse, decode, verify)]
        print(
            f"{appendices:>10} {len(documents[0][1]):>14} {med[0]:>11.0f} {med[1]:>10.0f} "
            f"{med[2]:>10.0f} {sum(med):>9.0f} {statistics.median(again) * 1e6:>13.0f}"
        )


def timed(action: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def throughput(
    trust: TrustStore, signers: list[tuple[SigningKey, tuple[bytes, ...]]], docs: int, runs: int
) -> None:
    documents = [make_document(10_000 + n, 1, signers) for n in range(docs)]
    decoded = [(root, SignatureSet.decode(encoded)) for root, _, encoded in documents]
    keys = {
        chain[0]: parse_certificate(chain[0]).public_key for _, chain in signers
    }  # loaded once, as a raw caller would
    raw_items: list[tuple[ed25519.Ed25519PublicKey, bytes, bytes]] = []
    for _, signature_set in decoded:
        for signature in signature_set.signatures:
            key = keys[signature.chain[0]]
            assert isinstance(key, ed25519.Ed25519PublicKey)
            raw_items.append((key, signature.signature, signature.payload()))
    count = len(raw_items)

    def ours(documents: list[tuple[Cid, SignatureSet]]) -> None:
        for root, signature_set in documents:
            verify_document_signatures(root, signature_set, trust=trust, now=NOW)

    def raw(items: list[tuple[ed25519.Ed25519PublicKey, bytes, bytes]]) -> None:
        for key, signature, payload in items:
            key.verify(signature, payload)

    ours(decoded)  # warm the chain cache, as a running node has it
    # Alternate small blocks (``block`` documents each) so load from other processes
    # falls on both sides alike; the ratio is taken per block.
    block = max(1, len(decoded) // 5)
    ours_wall, ours_cpu, raw_wall, raw_cpu, ratio_wall, ratio_cpu = [], [], [], [], [], []
    best_ours, best_raw = float("inf"), float("inf")
    for run in range(runs):
        for start in range(0, len(decoded), block):
            part = decoded[start : start + block]
            raw_part = raw_items[start * 6 : (start + len(part)) * 6]
            n = len(raw_part)
            if run % 2:  # alternate which side goes first
                a_wall, a_cpu = timed(lambda: ours(part))  # noqa: B023
                b_wall, b_cpu = timed(lambda: raw(raw_part))  # noqa: B023
            else:
                b_wall, b_cpu = timed(lambda: raw(raw_part))  # noqa: B023
                a_wall, a_cpu = timed(lambda: ours(part))  # noqa: B023
            best_ours = min(best_ours, a_cpu / n)
            best_raw = min(best_raw, b_cpu / n)
            ours_wall.append(n / a_wall)
            ours_cpu.append(n / a_cpu)
            raw_wall.append(n / b_wall)
            raw_cpu.append(n / b_cpu)
            ratio_wall.append(b_wall / a_wall)
            ratio_cpu.append(b_cpu / a_cpu)
    median = statistics.median
    print(
        f"\nsignature verifies/s ({count} signatures per run, {runs} runs in blocks of "
        f"{block * 6}, medians over {len(ratio_wall)} blocks):"
    )
    print(f"  p2pdoc verify_document_signatures: {median(ours_wall):8.0f}/s wall, "
          f"{median(ours_cpu):8.0f}/s CPU")  # fmt: skip
    print(f"  raw Ed25519PublicKey.verify:       {median(raw_wall):8.0f}/s wall, "
          f"{median(raw_cpu):8.0f}/s CPU")  # fmt: skip
    print(f"  ratio p2pdoc/raw: {median(ratio_wall):.3f} wall, {median(ratio_cpu):.3f} CPU "
          "(goal >= 0.9)")  # fmt: skip
    print(f"  best block: p2pdoc {best_ours * 1e6:.1f} us, raw {best_raw * 1e6:.1f} us per "
          f"signature (CPU), ratio {best_raw / best_ours:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    trust, signers = build_pki()
    per_document(trust, signers, max(10, args.docs // 3))
    throughput(trust, signers, args.docs, args.runs)


if __name__ == "__main__":
    main()
