"""Envelope throughput on one core: seal and open of a 2 KB report next to the raw crypto floor,
for each suite (classic X25519, and hybrid ML-KEM-768 + X25519), each against its own floor.

Every operation, the floors included, runs over the same number of distinct records (distinct
payloads, signatures, keys and ciphertexts), so that neither side gains from inputs that stay
in the CPU caches. Rounds interleave the operations and the best round of each is kept.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import MLKEM768X25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import MemoryReplayGuard, Report, open_envelope, record_bytes, seal, seal_payload
from tests.factories import NOW, Directory, TestNode, make_node, sample_report

COUNT = 2000
ROUNDS = 7
SEAL_TARGET = 0.85
OPEN_TARGET = 0.75


@dataclass
class Workload:
    """N distinct reports, their payloads and frames, and matching inputs for the floors."""

    sender: TestNode
    receiver: TestNode
    directory: Directory
    reports: list[Report]
    payloads: list[bytes]
    frames: list[bytes]
    kid: str
    recipient_key: X25519PublicKey | MLKEM768X25519PublicKey
    floor_inputs: list[tuple[bytes, bytes, AESGCM, bytes, bytes]]
    hybrid: bool = False

    @classmethod
    def build(cls, count: int = COUNT, *, hybrid: bool = False) -> Workload:
        sender = make_node("fr-pointdecontact", "FR", hybrid=hybrid)
        receiver = make_node("de-eco", "DE", hybrid=hybrid)
        directory = Directory(sender, receiver)
        reports = [sample_report(sender.node_id) for _ in range(count)]
        payloads = [record_bytes(report) for report in reports]
        kid, recipient_key = receiver.public().sealing_key(NOW)
        signing = sender.keys.current_signing(NOW)
        frames = [
            seal_payload(
                p,
                record_type="report",
                sender=sender.node_id,
                signing_key=signing,
                recipient=receiver.node_id,
                recipient_kid=kid,
                recipient_key=recipient_key,
                msg_id=uuid.uuid4(),
                now=NOW,
            )
            for p in payloads
        ]
        floor_inputs = []
        for payload in payloads:
            signature = signing.private.sign(payload)
            aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
            ciphertext = aead.encrypt(nonce, signature + payload, None)
            enc = X25519PrivateKey.generate().public_key().public_bytes_raw()
            if hybrid:
                mlkem = receiver.keys.hybrid[0].mlkem.public_key()
                enc = mlkem.encapsulate()[1] + enc
            floor_inputs.append((payload, signature, aead, nonce, enc + ciphertext))
        return cls(
            sender,
            receiver,
            directory,
            reports,
            payloads,
            frames,
            kid,
            recipient_key,
            floor_inputs,
            hybrid,
        )


def rate(run: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def operations(w: Workload) -> dict[str, Callable[[], None]]:
    if w.hybrid:
        return _hybrid_floors(w) | _envelope_operations(w)
    signing = w.sender.keys.current_signing(NOW)
    recipient_private = w.receiver.keys.decryption_key(w.kid, NOW).private
    verify_key = signing.private.public_key()
    recipient_key = w.recipient_key
    assert isinstance(recipient_key, X25519PublicKey)

    def floor_seal() -> None:
        # What sealing cannot avoid: a signature, an ephemeral key pair and its public key,
        # one X25519 exchange, and AES-256-GCM over signature + payload.
        for payload, _, aead, nonce, _ in w.floor_inputs:
            signature = signing.private.sign(payload)
            ephemeral = X25519PrivateKey.generate()
            ephemeral.public_key().public_bytes_raw()
            ephemeral.exchange(recipient_key)
            aead.encrypt(nonce, signature + payload, None)

    def floor_open() -> None:
        for payload, signature, aead, nonce, sealed in w.floor_inputs:
            recipient_private.exchange(X25519PublicKey.from_public_bytes(sealed[:32]))
            aead.decrypt(nonce, sealed[32:], None)
            verify_key.verify(signature, payload)

    return {"floor seal": floor_seal, "floor open": floor_open} | _envelope_operations(w)


def _hybrid_floors(w: Workload) -> dict[str, Callable[[], None]]:
    """The hybrid suite's floor: the classic one plus an ML-KEM-768 encapsulation (seal) or
    decapsulation (open). The X-Wing combiner's SHA3 hash is left out: it is the suite's cost."""
    signing = w.sender.keys.current_signing(NOW)
    hybrid = w.receiver.keys.hybrid_decryption_key(w.kid, NOW)
    mlkem_public: MLKEM768PublicKey = hybrid.mlkem.public_key()
    x25519_public = hybrid.x25519.public_key()
    verify_key = signing.private.public_key()

    def floor_seal() -> None:
        for payload, _, aead, nonce, _ in w.floor_inputs:
            signature = signing.private.sign(payload)
            mlkem_public.encapsulate()
            ephemeral = X25519PrivateKey.generate()
            ephemeral.public_key().public_bytes_raw()
            ephemeral.exchange(x25519_public)
            aead.encrypt(nonce, signature + payload, None)

    def floor_open() -> None:
        for payload, signature, aead, nonce, sealed in w.floor_inputs:
            hybrid.mlkem.decapsulate(sealed[:1088])
            hybrid.x25519.exchange(X25519PublicKey.from_public_bytes(sealed[1088:1120]))
            aead.decrypt(nonce, sealed[1120:], None)
            verify_key.verify(signature, payload)

    return {"floor seal": floor_seal, "floor open": floor_open}


def _envelope_operations(w: Workload) -> dict[str, Callable[[], None]]:
    signing = w.sender.keys.current_signing(NOW)
    common = {
        "sender": w.sender.node_id,
        "signing_key": signing,
        "recipient": w.receiver.node_id,
        "recipient_kid": w.kid,
        "recipient_key": w.recipient_key,
        "now": NOW,
    }

    def seal_records() -> None:
        for report in w.reports:
            seal(report, msg_id=uuid.uuid4(), **common)  # type: ignore[arg-type]

    def seal_payloads() -> None:
        for payload in w.payloads:
            seal_payload(payload, record_type="report", msg_id=uuid.uuid4(), **common)  # type: ignore[arg-type]

    def open_frames() -> None:
        guard = MemoryReplayGuard()
        for frame in w.frames:
            open_envelope(
                frame,
                recipient=w.receiver.node_id,
                keys=w.receiver.keys,
                peers=w.directory,
                replay=guard,
                now=NOW,
            )

    return {
        "seal (record -> frame)": seal_records,
        "seal (stored payload -> frame)": seal_payloads,
        "open (frame -> validated record)": open_frames,
    }


def measure(count: int = COUNT, rounds: int = ROUNDS, *, hybrid: bool = False) -> dict[str, float]:
    workload = Workload.build(count, hybrid=hybrid)
    ops = operations(workload)
    best = dict.fromkeys(ops, 0.0)
    for _ in range(rounds):
        for name, run in ops.items():
            best[name] = max(best[name], rate(run, count))
    return best


def open_floor(count: int = COUNT, rounds: int = ROUNDS) -> float:
    """Opens/s of the raw primitives (X25519 exchange, AES-256-GCM decrypt, Ed25519 verify)."""
    ops = operations(Workload.build(count))
    return max(rate(ops["floor open"], count) for _ in range(rounds))


def report(title: str, hybrid: bool) -> bool:
    rates = measure(hybrid=hybrid)
    sample = Workload.build(1, hybrid=hybrid)
    print(
        f"{title}: payload {len(sample.payloads[0])} bytes, frame {len(sample.frames[0])} bytes,"
        f" {COUNT} distinct records, one core, best of {ROUNDS} interleaved rounds"
    )
    for name, value in rates.items():
        print(f"  {name:<34} {value:>9,.0f} /s")
    seal_ratio = rates["seal (record -> frame)"] / rates["floor seal"]
    payload_ratio = rates["seal (stored payload -> frame)"] / rates["floor seal"]
    open_ratio = rates["open (frame -> validated record)"] / rates["floor open"]
    print(
        f"  seal ratio {seal_ratio:.2f} (from a stored payload {payload_ratio:.2f}), "
        f"target >= {SEAL_TARGET}"
    )
    print(f"  open ratio {open_ratio:.2f}, target >= {OPEN_TARGET}")
    ok = payload_ratio >= SEAL_TARGET and open_ratio >= OPEN_TARGET
    print("  targets met" if ok else "  TARGETS NOT MET")
    return ok


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    classic = report("classic suite (X25519)", hybrid=False)
    hybrid = report("hybrid suite (ML-KEM-768 + X25519)", hybrid=True)
    return 0 if classic and hybrid else 1


if __name__ == "__main__":
    raise SystemExit(main())
