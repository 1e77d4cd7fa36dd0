"""The console's sign-in token buckets, kept in the database (the sign_in_limits table).

In memory, a restart (or a crash an attacker provokes) gave every guesser a full allowance
again. Each bucket holds `burst` tokens, refills at `rate` per second, and one sign-in attempt
takes one token from each bucket it is keyed on. A bucket that would be full again is the same
as no row, so such rows are deleted as the table is used: it holds only the recent guessers.
"""

from __future__ import annotations

import math

from node.store.db import Tx


def take(conn: Tx, keys: list[str], *, now: float, rate: float, burst: float) -> int | None:
    """Take one token from each bucket inside the caller's write transaction; None when every
    bucket had one, else the seconds until the emptiest has one again (nothing is taken)."""
    conn.execute("DELETE FROM sign_in_limits WHERE at < ?", (now - burst / rate,))
    levels = {}
    for key in keys:
        row = conn.execute("SELECT tokens, at FROM sign_in_limits WHERE key = ?", (key,)).fetchone()
        tokens = burst if row is None else min(burst, row[0] + max(0.0, now - row[1]) * rate)
        levels[key] = tokens
    lowest = min(levels.values(), default=burst)
    if lowest < 1.0:
        return max(1, math.ceil((1.0 - lowest) / rate))
    conn.executemany(
        "INSERT INTO sign_in_limits (key, tokens, at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, at = excluded.at",
        [(key, tokens - 1.0, now) for key, tokens in levels.items()],
    )
    return None
