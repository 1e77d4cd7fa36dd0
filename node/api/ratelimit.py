"""Per-client token buckets for the public report endpoint."""

from __future__ import annotations

import math
from collections import OrderedDict

from node.clock import Clock
from node.errors import RateLimited

MAX_CLIENTS = 100_000


class RateLimiter:
    def __init__(self, clock: Clock, per_minute: int, burst: int | None = None) -> None:
        self.clock = clock
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        # Bounded: an attacker rotating addresses must not grow memory without limit.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, client: str) -> None:
        now = self.clock.now().timestamp()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise RateLimited(f"too many reports from this address; retry in {wait} s", wait)
        self._buckets[client] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
