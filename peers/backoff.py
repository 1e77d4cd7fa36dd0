"""Per-peer retry delays: exponential with jitter, capped at one hour (never defederate)."""

from __future__ import annotations

import random
from datetime import timedelta

BASE = timedelta(seconds=2)
CAP = timedelta(hours=1)


def backoff_delay(attempts: int, rng: random.Random) -> timedelta:
    """Delay before the next try after `attempts` consecutive failures (attempts >= 1).

    "Equal jitter": half the exponential step is fixed, half random, so peers that fail together
    do not retry together, and the delay still grows.
    """
    step = min(CAP.total_seconds(), BASE.total_seconds() * 2 ** max(0, min(attempts - 1, 20)))
    return timedelta(seconds=step / 2 + rng.uniform(0, step / 2))
