"""Envelope throughput on one core: seal and open of a 2 KB report next to the raw crypto floor.

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

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
    recipient_key: X25519PublicKey
    floor_inputs: list[tuple[bytes, bytes, AESGCM, bytes, bytes]]

    @classmethod
    def build(cls, count: int = COUNT) -> Workload:
        sender = make_node("fr-pointdecontact", "FR")
        receiver = make_node("de-eco", "DE")
        directory = Directory(sender, receiver)
        reports = [sample_report(sender.node_id) for _ in range(count)]
        payloads = [record_bytes(report) for report in reports]
        kid, recipient_key = receiver.public().encryption_key(NOW)
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
            floor_inputs.append((payload, signature, aead, nonce, enc + ciphertext))
        return cls(
            sender, receiver, directory, reports, payloads, frames, kid, recipient_key, floor_inputs
        )


def rate(run: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def operations(w: Workload) -> dict[str, Callable[[], None]]:
    signing = w.sender.keys.current_signing(NOW)
    recipient_private = w.receiver.keys.decryption_key(w.kid, NOW).private
    verify_key = signing.private.public_key()
    common = {
        "sender": w.sender.node_id,
        "signing_key": signing,
        "recipient": w.receiver.node_id,
        "recipient_kid": w.kid,
        "recipient_key": w.recipient_key,
        "now": NOW,
    }

    def floor_seal() -> None:
        # What sealing cannot avoid: a signature, an ephemeral key pair and its public key,
        # one X25519 exchange, and AES-256-GCM over signature + payload.
        for payload, _, aead, nonce, _ in w.floor_inputs:
            signature = signing.private.sign(payload)
            ephemeral = X25519PrivateKey.generate()
            ephemeral.public_key().public_bytes_raw()
            ephemeral.exchange(w.recipient_key)
            aead.encrypt(nonce, signature + payload, None)

    def floor_open() -> None:
        for payload, signature, aead, nonce, sealed in w.floor_inputs:
            recipient_private.exchange(X25519PublicKey.from_public_bytes(sealed[:32]))
            aead.decrypt(nonce, sealed[32:], None)
            verify_key.verify(signature, payload)

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
        "floor seal": floor_seal,
        "seal (record -> frame)": seal_records,
        "seal (stored payload -> frame)": seal_payloads,
        "floor open": floor_open,
        "open (frame -> validated record)": open_frames,
    }


def measure(count: int = COUNT, rounds: int = ROUNDS) -> dict[str, float]:
    workload = Workload.build(count)
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


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rates = measure()
    sample = Workload.build(1)
    print(
        f"payload {len(sample.payloads[0])} bytes, frame {len(sample.frames[0])} bytes, "
        f"{COUNT} distinct records, one core, best of {ROUNDS} interleaved rounds"
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
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
