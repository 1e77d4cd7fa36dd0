"""The long soak: two or three node processes under steady load, random SIGKILLs and outages.

    python bench/soak.py --minutes 30 [--rate 50] [--nodes 3] [--kill-every 180]
                         [--outage-every 300] [--outcomes 0.2] [--seed 1]

The nodes (FR, DE, US as in the e2e cluster) run on loopback, peered both ways with
`hotline-node peers add`, with a DNS server on 127.0.0.1 that resolves each case's host to
another node's country, so records flow in every direction. One driver thread per node submits
and assesses cases over the HTTP API at `--rate` cases per second across the federation, and
posts an outcome (`content_removed`) at the destination for a share of them, which travels
back to the origin. Meanwhile any node is SIGKILLed and restarted at random (mean interval
`--kill-every`), and one node at a time goes away for 20-60 s (`--outage-every`): SIGSTOP, or
stopped and started again. Every event is logged with its time; each node's RSS and peer queue
depth are sampled every 10 s.

At the end the driver stops, every node runs again, and the queues drain. Then:
- lost: every case that had to arrive, and did not. Acknowledged cases (submission and
  assessment answered) count; a case whose answer was lost to a kill counts only if its origin
  holds it assessed. Each must be held by its origin and its destination, the destination's
  `received` action must be back at the origin (the receipt), and an outcome posted at the
  destination must be at the origin (`bench/soak_ledger.py`, `account`).
- duplicated: records a node applied more than once, seen by any of three checks on the
  receiving node's store: a second audit entry `report.received` for one case, `report.updated`
  for one version or `action.received` for one action id; a second evidence frame kept for one
  action (a frame is kept only when a record is applied); two `forwarded`, `received` or
  `content_removed` actions by one node on one case (a duplicate under a fresh id, which no
  primary key stops). One record seen by several checks counts once (`duplicates`).
- `hotline-node audit verify` is intact on every node (run through the CLI, as users do);
- every peer queue is empty after the drain;
- RSS slope: a pooled regression within each process's life (segments between restarts),
  skipping its first `--warmup` seconds (240: a node's RSS climbs for about three minutes while
  its page cache fills, see WARMUP), in MiB/h, the highest over the nodes (`rss_slope`).

It ends with the line `soak: M minutes, N records, lost L, duplicated D, RSS slope S MiB/h`
(N: the cases that had to arrive) and exits non-zero unless nothing was lost or duplicated,
the slope is under 5 MiB/h, every audit log is intact and every queue drained.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak_ledger import (
    AuditRow,
    Case,
    EvidenceRow,
    Holdings,
    account,
    duplicates,
    rss_slope,
)
from bench.soak_load import HOSTS, Chaos, Driver, Fleet, Sampler, pending
from tests.support.cluster import NodeProcess, cli
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import ZONE

NODES = (("FR", "fr-pdc"), ("DE", "de-eco"), ("US", "us-ncmec"))
SLOPE_TARGET = 5.0  # MiB/h
# A node's RSS climbs for its first three minutes or so at 50 cases/s (97 -> 171 MiB, then
# nearly flat): the store's writer connection filling its page cache, bounded at 64 MiB
# (`PRAGMA cache_size = -65536`, node/store/db.py). That bounded climb is not a leak.
WARMUP = 240.0


class Clock:
    def __init__(self) -> None:
        self.zero = time.monotonic()

    def log(self, message: str) -> None:
        print(f"{time.monotonic() - self.zero:7.1f}s {message}", flush=True)


def drain(fleet: Fleet, timeout: float, log: Clock) -> dict[str, tuple[int, int] | None]:
    """Wait until no node has a record queued for a peer or a case waiting for its trace, three
    readings in a row (a record answered by a peer can queue one back)."""
    started = time.monotonic()
    quiet = 0
    while True:
        depths = {node.node_id: pending(node) for node in fleet.nodes}
        quiet = quiet + 1 if all(d == (0, 0) for d in depths.values()) else 0
        if quiet >= 3:
            log.log(f"drained in {time.monotonic() - started:.0f} s")
            return depths
        if time.monotonic() - started > timeout:
            log.log(f"not drained after {timeout:.0f} s: {depths}")
            return depths
        time.sleep(2.0)


def read_holdings(node: NodeProcess) -> tuple[Holdings, list[AuditRow], list[EvidenceRow]]:
    """What a stopped node holds: its own cases, every case, every action; the audit entries
    and evidence frames the duplicate checks read."""
    holdings = Holdings(node.node_id)
    with sqlite3.connect(f"file:{node.root / 'node.sqlite3'}?mode=ro", uri=True) as conn:
        for report_id, url, origin, assessed in conn.execute(
            "SELECT id, url, origin, verdict IS NOT NULL FROM reports"
        ):
            holdings.reports.add(report_id)
            if origin == node.node_id:
                holdings.own[url] = (report_id, bool(assessed))
        for action_id, report_id, code, by in conn.execute(
            "SELECT id, report_id, code, by_node FROM actions"
        ):
            holdings.actions[action_id] = (report_id, code, by)
        audit_rows = [
            AuditRow(*row)
            for row in conn.execute(
                "SELECT event, subject, details FROM audit_log WHERE event IN"
                " ('report.received', 'report.updated', 'action.received')"
            )
        ]
        evidence = [
            EvidenceRow(*row)
            for row in conn.execute(
                "SELECT sender, record_type, record_id FROM inbox_envelopes"
                " WHERE record_type = 'action'"
            )
        ]
    return holdings, audit_rows, evidence


def dead_letters(node: NodeProcess) -> int:
    """Records refused for good, either way (each also shows as a loss when it mattered)."""
    with sqlite3.connect(f"file:{node.root / 'node.sqlite3'}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])


def audit_intact(node: NodeProcess) -> str | None:
    """`hotline-node audit verify` as an operator runs it: its line when intact, else None."""
    result = cli(node.root, "audit", "verify", check=False)
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    return line if result.returncode == 0 and "intact" in line else None


def write_samples(path: Path, sampler: Sampler) -> None:
    """node, pid, seconds since the process started, RSS in MiB: to look at the curve."""
    with path.open("w") as out:
        out.write("node,pid,age_s,rss_mib\n")
        for node_id, processes in sampler.rss.items():
            for pid, samples in processes.items():
                out.writelines(f"{node_id},{pid},{s.age:.0f},{s.rss_mib:.1f}\n" for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="cases/s over the federation")
    parser.add_argument("--nodes", type=int, choices=(2, 3), default=3)
    parser.add_argument("--kill-every", type=float, default=180.0, help="mean s; 0: none")
    parser.add_argument("--outage-every", type=float, default=300.0, help="mean s; 0: none")
    parser.add_argument("--outcomes", type=float, default=0.2, help="share of cases")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=WARMUP,
        help="seconds of each process's life left out of the RSS slope",
    )
    parser.add_argument(
        "--cache-mib",
        type=int,
        help="[storage] cache_mib of each node (default: the node's, 64): how far RSS grows"
        " before it stays",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--samples", type=Path, help="write every RSS sample here (CSV)")
    args = parser.parse_args()

    clock = Clock()
    work = Path(tempfile.mkdtemp(prefix="hotline-soak-"))
    assert all(host in ZONE for host in HOSTS.values())
    with ZoneDnsServer(ZONE) as dns:
        nodes = [
            NodeProcess(node_id, cc, work / node_id, dns.nameserver)
            for cc, node_id in NODES[: args.nodes]
        ]
        fleet = Fleet(nodes, clock.log)
        try:
            for node in nodes:
                node.init({"storage": {"cache_mib": args.cache_mib}} if args.cache_mib else None)
                fleet.start(node)
            for node in nodes:
                for other in nodes:
                    if other is not node:
                        node.add_peer(other)
            clock.log(
                f"{len(nodes)} nodes up and peered; {args.rate:g} cases/s for {args.minutes:g}"
                f" min, kill every ~{args.kill_every:g} s, outage every ~{args.outage_every:g} s,"
                f" cache {args.cache_mib or 64} MiB, seed {args.seed}; data in {work}"
            )
            ok, cases, driver, chaos, sampler, drained = run(args, fleet, clock)
        finally:
            for node in nodes:
                if node.process is not None and node.process.poll() is None:
                    node.resume()  # a SIGSTOPped process would not see SIGTERM
                node.stop()
        read = {node.node_id: read_holdings(node) for node in nodes}
        dead = {node.node_id: dead_letters(node) for node in nodes}

    holdings = {node_id: h for node_id, (h, _, _) in read.items()}
    accounting = account(cases, holdings)
    duplicated = {
        (node_id, *key)
        for node_id, (h, audit_rows, evidence) in read.items()
        for key in duplicates(h, audit_rows, evidence)
    }
    for loss in accounting.losses[:10]:
        clock.log(f"LOST {loss.url}: {loss.what}")
    for key in sorted(duplicated)[:10]:
        clock.log(f"DUPLICATED at {key[0]}: {' '.join(key[1:])}")

    slopes: dict[str, float | None] = {}
    for node in nodes:
        segments = list(sampler.rss.get(node.node_id, {}).values())
        slopes[node.node_id] = rss_slope(segments, args.warmup)
        flat = [s for segment in segments for s in segment]
        slope = slopes[node.node_id]
        print(
            f"{node.node_id}: RSS {flat[0].rss_mib:.1f} -> {flat[-1].rss_mib:.1f} MiB"
            if flat
            else f"{node.node_id}: no RSS sample",
            f"over {len(segments)} processes, slope after {args.warmup:.0f} s of each "
            + ("n/a" if slope is None else f"{slope:.1f} MiB/h")
            + f"; kills {chaos.kills[node.node_id]}; max queue {sampler.max_queue[node.node_id]}"
            + f"; dead letters {dead[node.node_id]}",
        )
    acknowledged = sum(case.acknowledged for case in cases)
    print(
        f"driver: {len(cases)} cases tried, {acknowledged} acknowledged,"
        f" {accounting.uncertain_counted} uncertain and held (counted),"
        f" {accounting.uncertain_dropped} uncertain and not held;"
        f" {driver.outcomes_posted} outcomes posted;"
        f" {len(cases) / (args.minutes * 60):.1f} cases/s;"
        f" errors {dict(driver.errors) or 'none'}"
    )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"driver CPU: {usage.ru_utime + usage.ru_stime:.0f} s"
        f" ({(usage.ru_utime + usage.ru_stime) / (time.monotonic() - clock.zero):.0%} of a core)"
    )
    print(
        f"chaos: {sum(chaos.kills.values())} kills, {sum(chaos.outages.values())} outages"
        f" ({chaos.outages['pause']} SIGSTOP, {chaos.outages['stop']} stopped)"
    )
    if args.samples:
        write_samples(args.samples, sampler)
    measured = [s for s in slopes.values() if s is not None]
    slope = max(measured) if measured else None
    if slope is None:
        print(f"RSS slope: no process lived {args.warmup:.0f} s and two samples more (run longer)")
    met = (
        ok
        and drained
        and not accounting.losses
        and not duplicated
        and slope is not None
        and slope < SLOPE_TARGET
    )
    print(
        f"soak: {args.minutes:.1f} minutes, {accounting.counted} records,"
        f" lost {len(accounting.losses)}, duplicated {len(duplicated)},"
        f" RSS slope {'n/a' if slope is None else f'{slope:.1f}'} MiB/h"
    )
    if met and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif not met:
        print(f"targets missed; data kept in {work}", file=sys.stderr)
    return 0 if met else 1


def run(
    args: argparse.Namespace, fleet: Fleet, clock: Clock
) -> tuple[bool, list[Case], Driver, Chaos, Sampler, bool]:
    """The load and the chaos for `--minutes`, then the drain and the audit checks. Returns
    whether the audit logs are intact and nothing failed, and whether the queues drained."""
    driver = Driver(fleet, args.rate, args.outcomes, args.seed)
    chaos = Chaos(fleet, args.kill_every, args.outage_every, args.seed)
    sampler = Sampler(fleet)
    sampler.start()
    driver.start()
    chaos.start()
    time.sleep(args.minutes * 60)
    driver.stop.set()
    chaos.join()
    sampler.join()
    for node in fleet.nodes:
        if node.process is None or node.process.poll() is not None:
            fleet.start(node)
    driver.join(timeout=120)
    clock.log(f"stopped submitting after {len(driver.cases)} cases; draining")
    depths = drain(fleet, args.drain_timeout, clock)
    drained = all(d == (0, 0) for d in depths.values())
    ok = chaos.failure is None
    for node in fleet.nodes:
        line = audit_intact(node)
        clock.log(f"{node.node_id}: {line or 'AUDIT VERIFY FAILED'}")
        ok = ok and line is not None
    return ok, list(driver.cases), driver, chaos, sampler, drained


if __name__ == "__main__":
    raise SystemExit(main())
