"""Which crypto calls run in parallel threads: one thread against two, same total work.

`cryptography` releases the GIL in some calls and not in others; this decides what a thread
pool can spread over cores (see node/federation/crypto_pool.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
COUNT = 1500


def speedup(operation: Callable[[], object]) -> float:
    def work(n: int) -> None:
        for _ in range(n):
            operation()

    started = time.perf_counter()
    work(COUNT)
    one = time.perf_counter() - started
    threads = [threading.Thread(target=work, args=(COUNT // 2,)) for _ in range(2)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return one / (time.perf_counter() - started)


def main() -> int:
    signing = Ed25519PrivateKey.generate()
    message = os.urandom(2400)
    signature = signing.sign(message)
    verifying = signing.public_key()
    recipient = X25519PrivateKey.generate()
    public = recipient.public_key()
    sealed = SUITE.encrypt(message, public, info=b"bench")
    operations: dict[str, Callable[[], object]] = {
        "Ed25519 sign": lambda: signing.sign(message),
        "Ed25519 verify": lambda: verifying.verify(signature, message),
        "X25519 exchange": lambda: recipient.exchange(public),
        "HPKE seal": lambda: SUITE.encrypt(message, public, info=b"bench"),
        "HPKE open": lambda: SUITE.decrypt(sealed, recipient, info=b"bench"),
    }
    print(f"{len(os.sched_getaffinity(0))} cores; speed-up of two threads over one:")
    for name, operation in operations.items():
        print(f"  {name:<16} {speedup(operation):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
