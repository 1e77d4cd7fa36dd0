"""Federation throughput and latency between two node processes on loopback.

Throughput: N assessed reports (hosted in B's country) are imported and routed at A; the clock
runs from the start of A's routing to the last commit at B, so sealing, transport, opening,
storing and receipts are all inside the window. It is printed next to the open floor (the raw
primitives of one open, called directly, in this process; measured before and after the run,
and the higher taken) and their ratio. The import (intake
and assessment of each case) runs in the same transactions as the routing, so it is inside
the window too. Then a light steady load measures the latency from assessment at A to commit
at B. Then B is filled with many more records and the throughput run is repeated. Last, a
catch-up measures how fast a queue routed while A was down drains (for information: no
intake inside the window).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.envelope import open_floor
from node.store import audit
from protocol.ids import uuid7
from tests.support.cluster import NodeProcess, cli
from tests.support.dns_server import ZoneDnsServer

ZONE = {"host.example.de": {"A": [("88.198.0.1", 300)]}}


def count_from(db: Path, origin: str, after_rowid: int = 0) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM reports WHERE origin = ? AND rowid > ?", (origin, after_rowid)
            ).fetchone()[0]
        )


def last_rowid(conn: sqlite3.Connection) -> int:
    """The newest case's rowid: a cheap progress reading. Counting the sender's cases at every
    poll costs the observer a scan that grows with the store and steals CPU from the nodes."""
    return int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM reports").fetchone()[0])


def write_batch(path: Path, prefix: str, count: int) -> None:
    with path.open("w") as handle:
        for n in range(count):
            handle.write(
                json.dumps(
                    {
                        "url": f"http://host.example.de/{prefix}/{n}.jpg",
                        "category": "csam",
                        "verdict": "baseline",
                        "legal_basis": "baseline",
                        "hosting_country": "DE",
                    }
                )
                + "\n"
            )


def cpu_seconds(node: NodeProcess) -> float:
    """User and system CPU time of a node's process (Linux)."""
    assert node.process is not None
    fields = Path(f"/proc/{node.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mark(b: NodeProcess) -> int:
    """Where B's cases stand before a run (read before anything can arrive)."""
    with sqlite3.connect(f"file:{b.root / 'node.sqlite3'}?mode=ro", uri=True) as conn:
        return last_rowid(conn)


def wait_for(
    b: NodeProcess,
    origin: str,
    count: int,
    start_rowid: int,
    started: float,
    importer: subprocess.Popen[bytes] | None,
) -> float:
    """Poll B until `count` cases from `origin` are stored after `start_rowid`; the time of the
    last change.

    The clock stops at the last change seen (polled every 50 ms). Only rowids are read while
    waiting; the exact count is checked when the rowids say the records should all be there.
    """
    db = b.root / "node.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        last_seen, last_change = start_rowid, started
        while True:
            seen = last_rowid(conn)
            now = time.monotonic()
            if seen != last_seen:
                last_seen, last_change = seen, now
            if seen - start_rowid >= count and count_from(db, origin, start_rowid) >= count:
                return last_change
            if importer is not None and importer.poll() not in (None, 0):
                error = importer.stderr.read().decode() if importer.stderr else ""
                raise SystemExit(f"import failed at {seen - start_rowid}/{count}: {error}")
            if now - last_change > 120:
                raise SystemExit(f"stalled at {seen - start_rowid}/{count}")
            time.sleep(0.05)


def throughput(a: NodeProcess, b: NodeProcess, count: int, prefix: str, work: Path) -> float:
    batch = work / f"{prefix}.jsonl"
    write_batch(batch, prefix, count)
    start_rowid = mark(b)
    started = time.monotonic()
    importer = subprocess.Popen(
        [sys.executable, "-m", "node", "reports", "import", str(batch), "--data-dir", str(a.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = wait_for(b, a.node_id, count, start_rowid, started, importer) - started
    importer.wait(timeout=600)
    if importer.returncode != 0:
        raise SystemExit(
            f"import failed: {importer.stderr.read().decode() if importer.stderr else ''}"
        )
    return count / elapsed


def catch_up(a: NodeProcess, b: NodeProcess, count: int, prefix: str, work: Path) -> float:
    """A queue of `count` records already routed while A was stopped: records/s from A's
    restart to the last commit at B (sealing, transport, opening, storing, receipts)."""
    batch = work / f"{prefix}.jsonl"
    write_batch(batch, prefix, count)
    a.stop()
    cli(a.root, "reports", "import", str(batch))
    start_rowid = mark(b)
    a.start()
    started = time.monotonic()
    return count / (wait_for(b, a.node_id, count, start_rowid, started, None) - started)


def latency(a: NodeProcess, b: NodeProcess, rate: float, seconds: float) -> list[float]:
    """Assess at A at a steady rate; time until each report is committed at B."""
    pending: dict[str, float] = {}
    done: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def watch() -> None:
        with sqlite3.connect(f"file:{b.root / 'node.sqlite3'}?mode=ro", uri=True) as conn:
            while not stop.is_set() or pending:
                with lock:
                    ids = list(pending)
                if ids:
                    marks = ",".join("?" * len(ids))
                    rows = conn.execute(f"SELECT id FROM reports WHERE id IN ({marks})", ids)
                    now = time.monotonic()
                    with lock:
                        for (report_id,) in rows:
                            done.append(now - pending.pop(report_id))
                time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    interval = 1.0 / rate
    deadline = time.monotonic() + seconds
    n = 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        status, body = a.post(
            "/api/v1/reports", {"url": f"http://host.example.de/lat/{n}", "category": "csam"}
        )
        report_id = body["id"]
        # Wait for the trace (background job) so that the assessment routes at once.
        while (a.report(report_id) or {}).get("hosting", {}).get("status") == "pending":
            time.sleep(0.005)
        status, body = a.post(
            f"/api/v1/reports/{report_id}/assessment", {"verdict": "baseline", "category": "csam"}
        )
        assessed = time.monotonic()
        if status != 200:
            raise SystemExit(f"assessment failed: {body}")
        with lock:
            pending[report_id] = assessed
        n += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    stop.set()
    watcher.join(timeout=60)
    return done


def preload(b: NodeProcess, count: int) -> None:
    """Fill B's store directly (B stopped) with what `count` received reports leave behind.

    Per report, as the inbox writes them: the case, its version (a 2.4 KB payload), a hosting
    address, the routing decision, the `received` action (its id, derived with uuid5, is
    random) and a `content_removed` action, two chained audit entries, and the evidence frame
    (2.6 KB) with its digest. Ids are minted as the node mints them (UUIDv7), dated over the
    weeks before the run. The replay cache is not filled: the prune job keeps it to the replay
    window, whatever the store holds.
    """
    db = sqlite3.connect(b.root / "node.sqlite3")
    payload, frame = os.urandom(2400), os.urandom(2600)
    first = datetime(2025, 1, 1, tzinfo=UTC)
    chunk = 20_000
    for start in range(0, count, chunk):
        rows = range(start, min(count, start + chunk))
        times = [first + timedelta(seconds=n) for n in rows]
        stamps = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times]
        ids = [str(uuid7(t, os.urandom(10))) for t in times]
        with db:
            db.executemany(
                "INSERT INTO reports (id, origin, local_ref, seq, url, url_key, source, status,"
                " verdict, category, tlp, received_at, updated_at, trace_status) VALUES"
                " (?, 'old-peer', ?, 1, ?, ?, 'peer', 'closed', 'baseline', 'csam', 'amber',"
                " ?, ?, 'done')",
                [
                    (ids[i], f"old-{n}", url, url, at, at)
                    for i, (n, at) in enumerate(zip(rows, stamps, strict=True))
                    for url in [f"http://old.example/{n}"]
                ],
            )
            db.executemany(
                "INSERT INTO report_versions (report_id, seq, payload, created_at)"
                " VALUES (?, 1, ?, ?)",
                [(ids[i], payload, stamps[i]) for i in range(len(rows))],
            )
            db.executemany(
                "INSERT INTO hosting_addresses (report_id, ip, country, basis, source)"
                " VALUES (?, '88.198.0.1', 'DE', 'geo', 'bench')",
                [(report_id,) for report_id in ids],
            )
            db.executemany(
                "INSERT INTO routing_decisions (report_id, decision, targets, reasons,"
                " decided_at, decided_by) VALUES (?, 'domestic', '[]', '[]', ?, 'federation')",
                [(ids[i], stamps[i]) for i in range(len(rows))],
            )
            db.executemany(
                "INSERT INTO actions (id, report_id, code, at, by_node, country) VALUES"
                " (?, ?, ?, ?, 'de-b', 'DE')",
                [(str(uuid.uuid4()), ids[i], "received", stamps[i]) for i in range(len(rows))]
                + [
                    (str(uuid7(times[i], os.urandom(10))), ids[i], "content_removed", stamps[i])
                    for i in range(len(rows))
                ],
            )
            db.executemany(
                "INSERT INTO inbox_envelopes (digest, sender, msg_id, record_type, record_id,"
                " report_id, received_at, frame) VALUES (?, 'old-peer', ?, 'report', ?, ?, ?, ?)",
                [
                    (
                        os.urandom(32).hex(),  # a digest: as random as the real ones
                        str(uuid7(times[i], os.urandom(10))),
                        ids[i],
                        ids[i],
                        stamps[i],
                        frame,
                    )
                    for i in range(len(rows))
                ],
            )
            audit.append_many(
                db,
                [
                    audit.Entry(stamps[i], actor, event, ids[i], {"seq": 1})
                    for i in range(len(rows))
                    for actor, event in (
                        ("peer:old-peer", "report.received"),
                        ("federation", "report.routed"),
                    )
                ],
            )
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    args = parser.parse_args()
    floor_before = open_floor()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp, ZoneDnsServer(ZONE) as dns:
        work = Path(tmp)
        a = NodeProcess("fr-a", "FR", work / "a", dns.nameserver)
        b = NodeProcess("de-b", "DE", work / "b", dns.nameserver)
        try:
            for node in (a, b):
                node.init(batch_size=500)
                node.start()
            a.add_peer(b)
            b.add_peer(a)
            before = {"A": cpu_seconds(a), "B": cpu_seconds(b)}
            importer_before = children_cpu_seconds()
            rate = throughput(a, b, args.records, "run1", work)
            used = {
                "A": cpu_seconds(a) - before["A"],
                "B": cpu_seconds(b) - before["B"],
                "importer": children_cpu_seconds() - importer_before,
            }
            # The host's speed drifts (a floor taken once has varied from 3,800 to 5,500/s
            # here): measure again now that the run is over, and divide by the higher.
            floor_after = open_floor()
            floor = max(floor_before, floor_after)
            print(
                f"open floor (exchange + decrypt + verify, one core): {floor:,.0f} /s "
                f"(the higher of {floor_before:,.0f} before and {floor_after:,.0f} after the run)"
            )
            print(
                f"throughput A -> B, {args.records:,} records: {rate:,.0f} records/s, "
                f"ratio to the open floor {rate / floor:.2f} (target >= 0.30)"
            )
            met = rate / floor >= 0.30
            print(
                "  CPU per record: "
                + ", ".join(
                    f"{name} {seconds / args.records * 1e6:.0f} us"
                    for name, seconds in used.items()
                )
                + f" (total {sum(used.values()) / args.records * 1e6:.0f} us)"
            )
            # How much of the machine the run kept busy: what is left for more parallelism.
            cores = len(os.sched_getaffinity(0))
            busy = sum(used.values()) / (args.records / rate) / cores
            print(f"  CPU busy during the run: {busy:.0%} of {cores} cores")
            samples = latency(a, b, args.rate, args.latency_seconds)
            p50 = statistics.median(samples)
            p99 = statistics.quantiles(samples, n=100)[98] if len(samples) >= 100 else max(samples)
            print(
                f"latency at {args.rate:.0f} records/s ({len(samples)} records): "
                f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (target p99 < 1000 ms)"
            )
            met = met and p99 < 1.0
            if args.preload:
                b.stop()
                started = time.monotonic()
                preload(b, args.preload)
                print(
                    f"preloaded B with {args.preload:,} records in "
                    f"{time.monotonic() - started:.0f} s"
                )
                b.start()
                loaded = throughput(a, b, args.records, "run2", work)
                change = (loaded - rate) / rate
                met = met and change >= -0.20
                print(
                    f"throughput with B holding {args.preload + args.records:,} records: "
                    f"{loaded:,.0f} records/s ({change:+.0%}; target no worse than -20%)"
                )
            # Last, so that it does not grow either store before the comparison above.
            drained = catch_up(a, b, args.records, "catchup", work)
            print(
                f"catch-up of {args.records:,} records queued while A was down: "
                f"{drained:,.0f} records/s, ratio {drained / floor:.2f} (for information)"
            )
            cli(a.root, "audit", "verify")
            cli(b.root, "audit", "verify")
            print("audit chains verify on both nodes")
            print("targets met" if met else "TARGETS NOT MET")
        finally:
            for node in (a, b):
                node.stop()
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
