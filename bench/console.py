"""Console page times at scale: a node preloaded with N cases (1,000,000 by default), served by a
real node process, its queue, search and case pages fetched over HTTP by a signed-in person.

Each page's time is the whole request on loopback (the server's time plus a local round trip,
so an upper bound of the server's), printed beside the time of the bare SQL queries the page
runs (the floor: the same statements on a plain sqlite3 connection to the same file), and their
ratio. The target is p95 < 100 ms per page; the script exits non-zero when one is missed.

The preload is a bulk SQL insert (cases as intake writes them, the full-text index filled by
its trigger), not N intakes: it measures reading, not writing.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.ids import uuid7
from tests.support.cluster import NodeProcess, cli_json
from tests.support.dns_server import ZoneDnsServer

TARGET_MS = 100.0
HOSTS = 5000
STATUSES = [("new", 10), ("manual", 2), ("received", 5), ("routed", 23), ("closed", 60)]
CATEGORIES = ["csam", "csem", "grooming", "hate", "terrorism", "other"]
QUEUE_SQL = (
    "SELECT id, url, origin, local_ref, status, source, verdict, category, received_at,"
    " duplicates, trace_status FROM reports WHERE status = ? ORDER BY received_at, id LIMIT 51"
)
SEARCH_SQL = (
    "SELECT r.id, r.url, r.status FROM reports_fts f JOIN reports r ON r.rowid = f.rowid"
    " WHERE reports_fts MATCH ? ORDER BY f.rowid DESC LIMIT 51"
)
CASE_SQL = (
    ("SELECT * FROM reports WHERE id = ?", 1),
    ("SELECT * FROM actions WHERE report_id = ? ORDER BY at, rowid", 1),
    ("SELECT * FROM hosting_addresses WHERE report_id = ? ORDER BY ip", 1),
    ("SELECT * FROM routing_decisions WHERE report_id = ? ORDER BY id DESC LIMIT 1", 1),
    ("SELECT * FROM peer_outbox WHERE report_id = ? ORDER BY peer_id, seq", 1),
    ("SELECT * FROM channel_outbox WHERE report_id = ? ORDER BY id", 1),
    ("SELECT * FROM reviews WHERE report_id = ?", 1),
    ("SELECT seq, at, actor, event FROM audit_log WHERE subject = ? ORDER BY seq LIMIT 200", 1),
)


def preload(db_path: Path, count: int, rng: random.Random) -> list[str]:
    """Insert `count` cases, oldest first, over two years; returns a sample of their ids."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=730) / count
    weights = [w for _, w in STATUSES]
    names = [s for s, _ in STATUSES]
    sample: list[str] = []
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    batch = []
    for n in range(count):
        at = start + step * n
        case_id = str(uuid7(at, rng.randbytes(10)))
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        status = rng.choices(names, weights)[0]
        host = f"host{rng.randrange(HOSTS)}.example"
        batch.append(
            (
                case_id,
                "fr-bench" if status != "received" else "de-peer",
                f"fr-bench-{stamp[:10].replace('-', '')}-{n:016x}",
                f"https://{host}/gallery/{n}/img.jpg",
                "analyst",
                status,
                None if status in ("new", "received") else "national",
                rng.choice(CATEGORIES),
                stamp,
                f"note about item {n}" if n % 50 == 0 else None,
            )
        )
        if n % 997 == 0:
            sample.append(case_id)
        if len(batch) == 20_000:
            _flush(conn, batch)
            batch = []
    _flush(conn, batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return sample


def _flush(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO reports (id, origin, local_ref, seq, url, url_key, source, status, verdict,"
        " category, tlp, received_at, updated_at, notes, trace_status) VALUES (?1, ?2, ?3, 1,"
        " ?4, ?4, ?5, ?6, ?7, ?8, 'amber', ?9, ?9, ?10, 'done')",
        rows,
    )


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def timed_sql(conn: sqlite3.Connection, statements: list[tuple[str, tuple[object, ...]]]) -> float:
    started = time.perf_counter()
    for sql, params in statements:
        conn.execute(sql, params).fetchall()
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per page kind")
    args = parser.parse_args()
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as tmp, ZoneDnsServer({}) as dns:
        node = NodeProcess("fr-bench", "FR", Path(tmp) / "fr-bench", dns.nameserver)
        node.init({"console": {"language": "en"}})
        # The first open runs the migrations; the preload then writes to the file directly.
        cli_json(node.root, "users", "list")
        started = time.perf_counter()
        sample = preload(node.root / "node.sqlite3", args.cases, rng)
        print(f"preloaded {args.cases:,} cases in {time.perf_counter() - started:.0f} s")
        person = cli_json(node.root, "users", "add", "bench", "--role", "analyst")
        node.start(timeout=120)
        try:
            return measure(node, person["password"], sample, args.requests, rng)
        finally:
            node.stop()


def measure(
    node: NodeProcess, password: str, sample: list[str], requests: int, rng: random.Random
) -> int:
    jar = http.cookiejar.CookieJar()
    # The session cookie is Secure; urllib's jar would keep it from plain http, so the
    # cookie header is carried by hand.
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(node.url + "/console/sign-in").read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    sign_in_cookie = next(c.value for c in jar if c.name == "hln_sign_in") if jar else token[1]
    body = urllib.parse.urlencode(
        {"name": "bench", "password": password, "csrf": token[1], "code": ""}
    ).encode()
    request = urllib.request.Request(
        node.url + "/console/sign-in",
        data=body,
        headers={"Cookie": f"hln_sign_in={sign_in_cookie}"},
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a: object, **k: object) -> None:
            return None

    try:
        urllib.request.build_opener(NoRedirect).open(request)
    except urllib.error.HTTPError as exc:
        set_cookie = exc.headers.get_all("Set-Cookie") or []
        exc.close()
    session = next(c.split(";")[0] for c in set_cookie if c.startswith("hln_session="))
    headers = {"Cookie": session}

    def get(path: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(node.url + path, headers=headers)) as r:
            r.read()
            assert r.status == 200, path
        return (time.perf_counter() - started) * 1000

    sql = sqlite3.connect(f"file:{node.root / 'node.sqlite3'}?mode=ro", uri=True)
    kinds: dict[str, tuple[list[float], list[float]]] = {
        "queue": ([], []),
        "queue, filtered": ([], []),
        "search": ([], []),
        "case": ([], []),
    }
    for _ in range(5):  # warm both paths
        get("/console/queue")
    for n in range(requests):
        http_ms, sql_ms = kinds["queue"]
        http_ms.append(get("/console/queue"))
        sql_ms.append(timed_sql(sql, [(QUEUE_SQL, (s,)) for s in ("new", "manual", "received")]))
        category = CATEGORIES[n % len(CATEGORIES)]
        http_ms, sql_ms = kinds["queue, filtered"]
        http_ms.append(get(f"/console/queue?category={category}"))
        sql_ms.append(
            timed_sql(
                sql,
                [
                    (QUEUE_SQL.replace("WHERE", "WHERE category = ? AND"), (category, s))
                    for s in ("new", "manual", "received")
                ],
            )
        )
        host = f"host{rng.randrange(HOSTS)}.example"
        http_ms, sql_ms = kinds["search"]
        http_ms.append(get(f"/console/search?q={host}"))
        sql_ms.append(timed_sql(sql, [(SEARCH_SQL, (f'"{host}"',))]))
        case_id = rng.choice(sample)
        http_ms, sql_ms = kinds["case"]
        http_ms.append(get(f"/console/case/{case_id}"))
        sql_ms.append(timed_sql(sql, [(q, (case_id,)) for q, _ in CASE_SQL]))
    print(
        f"\n{'page':<18}{'p50 ms':>9}{'p95 ms':>9}{'SQL p95 ms':>12}{'ratio':>8}"
        "  target p95 < 100 ms"
    )
    missed = False
    for name, (http_ms, sql_ms) in kinds.items():
        page_p95, floor = p95(http_ms), p95(sql_ms)
        ok = page_p95 < TARGET_MS
        missed |= not ok
        print(
            f"{name:<18}{statistics.median(http_ms):>9.1f}{page_p95:>9.1f}{floor:>12.2f}"
            f"{page_p95 / floor:>8.1f}  {'ok' if ok else 'MISSED'}"
        )
    print(f"({requests} requests per page over loopback; SQL = the page's bare queries)")
    return 1 if missed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
