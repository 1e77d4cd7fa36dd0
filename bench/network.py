"""A federation of 50 hotlines on one machine, joined through one member directory.

Fifty real `serve` processes on loopback (each its own data directory, port and keys). An
umbrella body is made with the documented tools (`directory init`, 2 signers of 3), every node
is listed, the list is signed by two signers and published over HTTP, and every node trusts the
root with `directory trust ROOT --source URL --auto-peer`: no fingerprint is typed anywhere.

Phases, each measured:
- **Traffic**: for `--minutes`, cases are submitted and assessed at random members at `--rate`
  cases/s (default 1/s: ten times INHOPE's network average of about 0.08/s), each hosted in
  another member's country (a DNS name per country, placed by `[jurisdiction] overrides`), so
  each goes to exactly one peer. Latency is from the assessment at the origin to the commit at
  the destination (both read from the nodes' own databases).
- **Outage**: one member is stopped during the traffic and started again; what was queued for
  it is delivered after.
- **Directory changes**: a member joins (a new node), one leaves (removed from the list: every
  node suspends it) and one replaces its identity key (a fresh identity under the same node id,
  listed with its new fingerprint: every node's pin follows). The time until every node applied
  each change is measured; nodes refresh on their own schedule (`[directory] refresh_minutes`).
  A few cases then go to the member that joined and the one re-keyed.

Checks at the end: every acknowledged case is held by its destination exactly once (one
`report.received` audit entry) and by no other node than its origin and destination; no queue
is left; `hotline-node audit verify` passes on every node. Last line:

  network: 50 nodes, N records, lost L, duplicated D, p99 X ms,
  directory change reached all in Y s, RSS per node Z MiB   (one line)

Run: `python bench/network.py` (about 9 minutes here, quiet); `--nodes 10 --minutes 1` for a
quick look.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.config import parse_config, render_config
from node.umbrella import UmbrellaDir, member_of
from tests.support.cluster import NodeProcess, cli, cli_json
from tests.support.dns_server import ZoneDnsServer

# Fifty-five countries with a hotline or a plausible one (ISO 3166-1 alpha-2).
COUNTRIES = [
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
    "GB",
    "US",
    "CA",
    "AU",
    "NZ",
    "JP",
    "KR",
    "BR",
    "AR",
    "CL",
    "CO",
    "MX",
    "ZA",
    "KE",
    "NG",
    "EG",
    "MA",
    "TN",
    "TR",
    "IL",
    "IS",
    "NO",
    "CH",
    "UA",
    "RS",
    "BA",
    "MK",
    "AL",
]
DIRECTORY = "hotlines"


@dataclass
class Member:
    node: NodeProcess
    index: int

    @property
    def country(self) -> str:
        return self.node.country

    @property
    def host(self) -> str:
        return f"{self.country.lower()}.hotlines.example"


@dataclass
class Sent:
    report_id: str
    origin: str  # node id
    destination: str  # node id
    assessed: float = 0.0  # time.monotonic() when the assessment was answered
    arrived: float | None = None  # when the destination's database first held it


@dataclass
class Run:
    root: Path
    members: list[Member]
    sent: list[Sent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: dict[str, tuple[Sent, NodeProcess]] = field(default_factory=dict)


class ArrivalWatch:
    """The latency: from the assessment's answer at the origin to the moment the destination's
    database holds the case, read every 20 ms (the nodes' own times are whole seconds)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.wait(0.02):
            with self.run.lock:
                waiting = list(self.run.waiting.items())
            for report_id, (sent, node) in waiting:
                try:
                    held = query(node, "SELECT 1 FROM reports WHERE id = ?", (report_id,))
                except sqlite3.Error:
                    continue  # being created or restarted: next round
                if held:
                    sent.arrived = time.monotonic()
                    with self.run.lock:
                        self.run.waiting.pop(report_id, None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def zone_and_overrides(countries: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A DNS name per country, on a public address that `[jurisdiction] overrides` places in
    that country (a trace only resolves names and looks addresses up: nothing is ever sent to
    them; an address that is not global, like the benchmarking range, is never placed)."""
    zone: dict[str, Any] = {}
    overrides: dict[str, str] = {}
    for n, country in enumerate(countries):
        zone[f"{country.lower()}.hotlines.example"] = {"A": [(f"45.{n}.0.1", 300)]}
        overrides[f"45.{n}.0.0/16"] = country
    return zone, overrides


def prepare(node: NodeProcess, overrides: dict[str, str], refresh_minutes: int) -> None:
    """`init`, a token for the driver, and node.toml: what a member of this network needs."""
    made = cli_json(
        node.root,
        "init",
        "--node-id",
        node.node_id,
        "--country",
        node.country,
        "--endpoint",
        node.url,
        "--listen",
        f"127.0.0.1:{node.port}",
        "--dns-server",
        node.dns,
    )
    node.fingerprint = made["fingerprint"]
    path = node.root / "node.toml"
    raw = tomllib.loads(path.read_text())
    raw["jurisdiction"] = {**raw.get("jurisdiction", {}), "overrides": overrides}
    raw["federation"] = {**raw.get("federation", {}), "sweep_seconds": 1}
    raw["directory"] = {**raw.get("directory", {}), "refresh_minutes": refresh_minutes}
    raw["console"] = {"four_eyes": []}
    # What a member of a 50-node machine needs: a small database cache (its memory grows by
    # up to this much, then stays).
    raw["storage"] = {**raw.get("storage", {}), "cache_mib": 8}
    path.write_text(render_config(parse_config(raw)))
    node.analyst = cli_json(node.root, "tokens", "create", "--role", "analyst", "--name", "bench")[
        "token"
    ]


def parallel(work: Callable[[Any], Any], items: Iterable[Any], workers: int) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))


# --- the umbrella body ------------------------------------------------------------------------
class Umbrella:
    def __init__(self, root: Path, publish: Path) -> None:
        self.dir = root
        self.publish = publish
        self.server: ThreadingHTTPServer | None = None
        self.published = 0

    def init(self) -> None:
        cli(
            self.dir.parent,
            "directory",
            "init",
            str(self.dir),
            "--name",
            DIRECTORY,
            "--signers",
            "3",
            "--threshold",
            "2",
        )
        shutil.copy(self.dir / "root.json", self.publish / "root-1.json")

    def list_members(self, members: Iterable[Member], *, replace: bool = False) -> None:
        """In this process, as `directory add` would (fifty processes would cost a minute)."""
        umbrella = UmbrellaDir(self.dir)
        for member in members:
            node = member.node
            umbrella.add(
                member_of(
                    node_id=node.node_id,
                    country=node.country,
                    endpoint=node.url,
                    fingerprint=node.fingerprint,
                    categories=None,
                    suites=None,
                ),
                replace=replace,
            )

    def unlist(self, member: Member) -> None:
        cli(self.dir.parent, "directory", "remove", str(self.dir), "--node-id", member.node.node_id)

    def sign_and_publish(self) -> None:
        for signer in ("signer-1.key", "signer-2.key"):
            cli(
                self.dir.parent, "directory", "sign", str(self.dir), "--key", str(self.dir / signer)
            )
        self.published += 1
        made = self.dir.parent / f"list-{self.published}.json"
        cli(self.dir.parent, "directory", "publish", str(self.dir), "--output", str(made))
        # Swapped in whole: a node fetching it meanwhile gets the old list or the new one.
        shutil.copy(made, self.publish / "list.json.new")
        os.replace(self.publish / "list.json.new", self.publish / "list.json")

    def serve(self) -> str:
        handler = partial(_QuietHandler, directory=str(self.publish))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/list.json"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# --- reading the nodes' databases -------------------------------------------------------------
def query(node: NodeProcess, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{node.root / 'node.sqlite3'}?mode=ro", uri=True, timeout=30) as c:
        rows = c.execute(sql, params).fetchall()
    c.close()
    return rows


def active_peers(node: NodeProcess) -> dict[str, str]:
    """Peer id -> pinned fingerprint, for the active peers."""
    return dict(query(node, "SELECT node_id, fingerprint FROM peers WHERE status = 'active'"))


def wait_all(check: Callable[[Member], bool], members: list[Member], timeout: float) -> float:
    """Seconds until `check` holds on every member (raises after `timeout`)."""
    started = time.monotonic()
    waiting = list(members)
    while waiting:
        waiting = [m for m in waiting if not check(m)]
        if not waiting:
            break
        if time.monotonic() - started > timeout:
            names = ", ".join(m.node.node_id for m in waiting[:5])
            raise RuntimeError(f"{len(waiting)} node(s) never got there ({names}…)")
        time.sleep(1)
    return time.monotonic() - started


# --- traffic ----------------------------------------------------------------------------------
def submit(run: Run, origin: Member, destination: Member, n: int) -> None:
    url = f"http://{destination.host}/bench/{origin.node.node_id}/{n}.jpg"
    try:
        status, body = origin.node.post("/api/v1/reports", {"url": url, "category": "csam"})
        if status not in (200, 201):
            raise RuntimeError(f"submit {status}: {body}")
        report_id = body["id"]
        status, body = origin.node.post(
            f"/api/v1/reports/{report_id}/assessment",
            {"verdict": "baseline", "category": "csam", "legal_basis": "baseline"},
        )
        if status != 200:
            raise RuntimeError(f"assess {status}: {body}")
    except Exception as exc:  # a member stopped on purpose: the case was not acknowledged
        with run.lock:
            run.errors.append(f"{origin.node.node_id}: {exc}")
        return
    sent = Sent(report_id, origin.node.node_id, destination.node.node_id, time.monotonic())
    with run.lock:
        run.sent.append(sent)
        run.waiting[report_id] = (sent, destination.node)


def traffic(
    run: Run,
    members: list[Member],
    *,
    seconds: float,
    rate: float,
    rng: random.Random,
    down: set[str],
    during: Callable[[float], None] | None = None,
) -> None:
    started = time.monotonic()
    n = 0
    with ThreadPoolExecutor(4) as pool:
        while (elapsed := time.monotonic() - started) < seconds:
            if during is not None:
                during(elapsed)
            origin, destination = rng.sample(members, 2)
            if origin.node.node_id not in down:
                pool.submit(submit, run, origin, destination, n)
                n += 1
            time.sleep(max(0.0, started + n / rate - time.monotonic()))


# --- checks -----------------------------------------------------------------------------------
def drained(node: NodeProcess, skip: set[str]) -> bool:
    marks = ",".join("?" for _ in skip) or "''"
    rows = query(
        node,
        f"SELECT COUNT(*) FROM peer_outbox WHERE state = 'pending' AND peer_id NOT IN ({marks})",
        tuple(skip),
    )
    return int(rows[0][0]) == 0


def account(run: Run, members: list[Member]) -> tuple[int, int, int, list[float]]:
    """(lost, duplicated, misplaced, latencies in ms) over every acknowledged case: each must be
    held by its destination once (one `report.received` audit entry) and by no other member."""
    received: dict[str, dict[str, int]] = {}
    for member in members:
        rows = query(
            member.node,
            "SELECT subject, COUNT(*) FROM audit_log WHERE event = 'report.received'"
            " GROUP BY subject",
        )
        received[member.node.node_id] = {str(s): int(c) for s, c in rows}
    lost = duplicated = misplaced = 0
    latencies: list[float] = []
    for sent in run.sent:
        count = received.get(sent.destination, {}).get(sent.report_id, 0)
        if count == 0:
            lost += 1
        duplicated += max(0, count - 1)
        misplaced += sum(
            1
            for node_id, seen in received.items()
            if node_id != sent.destination and sent.report_id in seen
        )
        if sent.arrived is not None:
            latencies.append((sent.arrived - sent.assessed) * 1000)
    return lost, duplicated, misplaced, latencies


def rss_mib(node: NodeProcess) -> float:
    assert node.process is not None
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[98]


# --- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=50, help="members at the start (2-54)")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the traffic phase")
    parser.add_argument("--rate", type=float, default=1.0, help="cases per second, network-wide")
    parser.add_argument("--outage-seconds", type=float, default=45.0)
    parser.add_argument("--refresh-minutes", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="commands run at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args(argv)
    if not 3 <= args.nodes <= len(COUNTRIES) - 1:
        parser.error(f"--nodes must be between 3 and {len(COUNTRIES) - 1}")
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="hln-network-"))
    zone, overrides = zone_and_overrides(COUNTRIES[: args.nodes + 1])
    started = time.monotonic()
    with ZoneDnsServer(zone) as dns:
        members = [
            Member(
                NodeProcess(
                    f"{cc.lower()}-hotline", cc, root / f"{cc.lower()}-hotline", dns.nameserver
                ),
                n,
            )
            for n, cc in enumerate(COUNTRIES[: args.nodes + 1])
        ]
        joining = members.pop()  # joins the network later
        run = Run(root, members)
        (root / "publish").mkdir()
        umbrella = Umbrella(root / "umbrella", root / "publish")
        try:
            return _run(args, rng, run, members, joining, umbrella, overrides, started)
        finally:
            umbrella.close()
            parallel(lambda m: m.node.stop(), [*members, joining], args.workers * 4)
            if args.keep:
                say(f"data directories kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    rng: random.Random,
    run: Run,
    members: list[Member],
    joining: Member,
    umbrella: Umbrella,
    overrides: dict[str, str],
    started: float,
) -> int:
    workers = args.workers
    phase = time.monotonic()
    parallel(lambda m: prepare(m.node, overrides, args.refresh_minutes), members, workers)
    parallel(lambda m: m.node.start(timeout=120), members, workers)
    say(f"{len(members)} nodes initialised and serving in {time.monotonic() - phase:.0f} s")

    phase = time.monotonic()
    umbrella.init()
    umbrella.list_members(members)
    umbrella.sign_and_publish()
    source = umbrella.serve()
    root_file = str(umbrella.dir / "root.json")
    parallel(
        lambda m: cli(
            m.node.root, "directory", "trust", root_file, "--source", source, "--auto-peer"
        ),
        members,
        workers,
    )
    everyone = {m.node.node_id for m in members}
    joined = wait_all(
        lambda m: set(active_peers(m.node)) == everyone - {m.node.node_id}, members, 600
    )
    say(
        f"directory trusted and {len(members)} x {len(members) - 1} peerings made in"
        f" {time.monotonic() - phase:.0f} s (last peering {joined:.0f} s after the trusts)"
    )

    # traffic, with one member stopped for a while
    out = members[len(members) // 2]
    down: set[str] = set()
    seconds = args.minutes * 60
    outage_at, back_at = seconds / 3, seconds / 3 + args.outage_seconds

    stopped: list[float] = []

    def outage(elapsed: float) -> None:
        if elapsed >= outage_at and not stopped:
            stopped.append(elapsed)
            down.add(out.node.node_id)
            out.node.stop()
            say(f"outage: {out.node.node_id} stopped")
        elif elapsed >= back_at and down:
            out.node.start(timeout=120)
            down.clear()
            say(f"outage: {out.node.node_id} back after {elapsed - stopped[0]:.0f} s")

    phase = time.monotonic()
    watch = ArrivalWatch(run)
    traffic(run, members, seconds=seconds, rate=args.rate, rng=rng, down=down, during=outage)
    if down:
        out.node.start(timeout=120)
        down.clear()
    say(f"traffic: {len(run.sent)} cases in {time.monotonic() - phase:.0f} s")

    # directory changes: one joins, one leaves, one replaces its identity key
    leaving, rekeyed = members[1], members[2]
    changes: dict[str, float] = {}
    phase = time.monotonic()
    prepare(joining.node, overrides, args.refresh_minutes)
    joining.node.start(timeout=120)
    cli(joining.node.root, "directory", "trust", root_file, "--source", source, "--auto-peer")
    umbrella.list_members([joining])
    umbrella.sign_and_publish()
    members.append(joining)
    changes["join"] = wait_all(
        lambda m: joining.node.node_id in active_peers(m.node) or m is joining,
        members,
        600,
    )
    say(f"join: {joining.node.node_id} peered by all in {changes['join']:.0f} s")

    umbrella.unlist(leaving)
    umbrella.sign_and_publish()
    rest = [m for m in members if m is not leaving]
    changes["leave"] = wait_all(
        lambda m: leaving.node.node_id not in active_peers(m.node), rest, 600
    )
    say(f"leave: {leaving.node.node_id} suspended by all in {changes['leave']:.0f} s")

    rekeyed.node.stop()
    old = rekeyed.node.root.with_name(rekeyed.node.root.name + "-old")
    rekeyed.node.root.rename(old)
    prepare(rekeyed.node, overrides, args.refresh_minutes)  # a fresh identity, same node id
    rekeyed.node.start(timeout=120)
    cli(rekeyed.node.root, "directory", "trust", root_file, "--source", source, "--auto-peer")
    umbrella.list_members([rekeyed], replace=True)
    umbrella.sign_and_publish()
    others = [m for m in rest if m is not rekeyed]
    changes["key"] = wait_all(
        lambda m: active_peers(m.node).get(rekeyed.node.node_id) == rekeyed.node.fingerprint,
        others,
        600,
    )
    say(f"key: {rekeyed.node.node_id}'s new identity pinned by all in {changes['key']:.0f} s")
    say(f"directory changes took {time.monotonic() - phase:.0f} s")

    # a few cases to the member that joined and the one re-keyed, from anyone still listed
    for destination in (joining, rekeyed):
        for n in range(5):
            origin = rng.choice([m for m in others if m is not destination])
            submit(run, origin, destination, 10_000 + n)

    phase = time.monotonic()
    skip = {leaving.node.node_id}
    wait_all(lambda m: drained(m.node, skip), rest, 600)
    time.sleep(3)  # let any copy arrive
    say(f"queues drained in {time.monotonic() - phase:.0f} s")
    watch.close()

    # The re-keyed member's old data directory held what it received before: count both.
    lost, duplicated, misplaced, latencies = account_with_old(run, members, rekeyed, old)
    rss = [rss_mib(m.node) for m in members if m.node.process is not None]
    audits = parallel(
        lambda m: "intact" in cli(m.node.root, "audit", "verify", check=False).stdout,
        members,
        workers,
    )
    broken = sum(1 for ok in audits if not ok)
    # The member stopped for the outage takes its cases when it is back, by design: they are
    # shown apart, and the latency line is the rest's.
    steady = [
        (s.arrived - s.assessed) * 1000
        for s in run.sent
        if s.arrived is not None and s.destination != out.node.node_id
    ]
    waited = [
        (s.arrived - s.assessed) * 1000
        for s in run.sent
        if s.arrived is not None and s.destination == out.node.node_id
    ]
    say(
        f"latency assessment -> destination over {len(steady)} cases: p50"
        f" {statistics.median(steady):.0f} ms, p99 {p99(steady):.0f} ms, max {max(steady):.0f} ms;"
        f" {len(waited)} case(s) to {out.node.node_id}, stopped for the outage: max"
        f" {max(waited, default=0) / 1000:.0f} s (of {len(latencies)} measured)"
    )
    say(
        f"{len(run.errors)} submission(s) refused while a member was down;"
        f" {misplaced} case(s) at a node they were not for; {broken} audit chain(s) broken;"
        f" RSS per node mean {statistics.mean(rss):.0f} MiB, max {max(rss):.0f} MiB;"
        f" whole run {time.monotonic() - started:.0f} s"
    )
    print(
        f"network: {len(members)} nodes, {len(run.sent)} records, lost {lost}, duplicated"
        f" {duplicated}, p99 {p99(steady):.0f} ms, directory change reached all in"
        f" {max(changes.values()):.0f} s, RSS per node {statistics.mean(rss):.0f} MiB",
        flush=True,
    )
    return 0 if lost == duplicated == misplaced == broken == 0 else 1


def account_with_old(
    run: Run, members: list[Member], rekeyed: Member, old: Path
) -> tuple[int, int, int, list[float]]:
    """`account`, with the re-keyed member's first data directory read as part of it: a node
    replaced by a new identity is one member whose history is in two databases."""
    before = NodeProcess(rekeyed.node.node_id, rekeyed.node.country, old, rekeyed.node.dns)
    first = [s for s in run.sent if s.destination == rekeyed.node.node_id]
    later_ids = {
        str(row[0])
        for row in query(
            rekeyed.node, "SELECT id FROM reports WHERE origin != ?", (rekeyed.node.node_id,)
        )
    }
    sent_before = [s for s in first if s.report_id not in later_ids]
    others = Run(run.root, members, [s for s in run.sent if s not in sent_before])
    lost, duplicated, misplaced, latencies = account(others, members)
    old_run = Run(run.root, [Member(before, rekeyed.index)], sent_before)
    old_lost, old_duplicated, _, old_latencies = account(old_run, [Member(before, rekeyed.index)])
    return lost + old_lost, duplicated + old_duplicated, misplaced, latencies + old_latencies


if __name__ == "__main__":
    raise SystemExit(main())
