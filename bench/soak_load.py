"""The soak's moving parts: the fleet of node processes, the driver, the chaos and the sampler.

Each runs in a thread of the soak's own process. The driver keeps one keep-alive HTTP connection
per thread, two threads per node, so that it costs the nodes' two cores little (about 7 % of
a core at 50 cases/s).
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak_ledger import Case, Sample
from tests.support.cluster import NodeProcess

Log = Callable[[str], None]

# Where each country's cases are hosted: names the e2e zone (tests/support/nodes.py) resolves
# to an address of that country.
HOSTS = {"FR": "fr.example", "DE": "de.example", "US": "us.example"}


class Fleet:
    """The node processes, which of them may take work, and when each process started."""

    def __init__(self, nodes: list[NodeProcess], log: Log) -> None:
        self.nodes = nodes
        self.log = log
        self._lock = threading.Lock()
        self._up = {node.node_id: False for node in nodes}
        self.started: dict[int, float] = {}  # pid -> monotonic time its start was asked

    def start(self, node: NodeProcess, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            asked = time.monotonic()
            try:
                node.start(timeout=60)
            except RuntimeError as exc:
                self.log(f"start of {node.node_id} failed ({attempt}/{attempts}): {exc}")
                node.stop(signal.SIGKILL)
                if attempt == attempts:
                    raise
                continue
            assert node.process is not None
            self.started[node.process.pid] = asked
            self.set_up(node, True)
            return

    def node(self, node_id: str) -> NodeProcess:
        return next(node for node in self.nodes if node.node_id == node_id)

    def set_up(self, node: NodeProcess, up: bool) -> None:
        with self._lock:
            self._up[node.node_id] = up

    def is_up(self, node: NodeProcess) -> bool:
        with self._lock:
            return self._up[node.node_id]

    def up_count(self) -> int:
        with self._lock:
            return max(1, sum(self._up.values()))


class Lost(Exception):
    """The answer did not come: the node was killed, or did not answer in time."""


class Http:
    """One keep-alive connection to a node's API, reopened after a failure."""

    def __init__(self, node: NodeProcess, timeout: float = 90.0) -> None:
        self.node = node
        self.timeout = timeout  # longer than an outage: a request caught by SIGSTOP completes
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.node.port, self.timeout)
        headers = {
            "Authorization": f"Bearer {self.node.analyst}",
            "Content-Type": "application/json",
        }
        try:
            self._conn.request("POST", path, json.dumps(body), headers)
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise Lost(str(exc)) from exc
        if response.will_close:
            self.close()
        try:
            return response.status, json.loads(data or b"null")
        except ValueError:  # not the API's JSON (a proxy's page, a truncated body): shown as is
            return response.status, data[:200].decode(errors="replace")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class _Due:
    at: float
    case: Case
    tries: int = 0


@dataclass
class Driver:
    """Creates and assesses cases at `rate` per second over the nodes that are up; posts an
    outcome (`content_removed`) at the destination of a share `outcomes` of them."""

    fleet: Fleet
    rate: float
    outcomes: float
    seed: int
    threads: int = 2  # per node: a case takes about as long as one thread's share of 50/s
    stop: threading.Event = field(default_factory=threading.Event)
    cases: list[Case] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    outcomes_posted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _due: dict[str, deque[_Due]] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for node in self.fleet.nodes:
            self._due[node.node_id] = deque()
        for n, node in enumerate(self.fleet.nodes):
            for k in range(self.threads):
                rng = random.Random(self.seed * 1000 + n * 100 + k)
                thread = threading.Thread(target=self._run, args=(node, k, rng), daemon=True)
                thread.start()
                self._threads.append(thread)

    def join(self, timeout: float) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, node: NodeProcess, k: int, rng: random.Random) -> None:
        http = Http(node)
        others = [n for n in self.fleet.nodes if n is not node]
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            if not self.fleet.is_up(node):
                http.close()
                time.sleep(0.2)
                next_at = time.monotonic()
                continue
            self._post_outcome(node, http)
            destination = rng.choice(others)
            case = Case(
                f"http://{HOSTS[destination.country]}/soak/{node.node_id}/{k}/{n}.jpg",
                node.node_id,
                destination.node_id,
            )
            n += 1
            with self._lock:
                self.cases.append(case)
            if self._create(http, case) and rng.random() < self.outcomes:
                self._due[destination.node_id].append(_Due(time.monotonic() + 2.0, case))
            # The federation's rate, shared by the nodes that are up; no burst to catch up
            # more than a second after a stall.
            interval = self.fleet.up_count() * self.threads / self.rate
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            time.sleep(max(0.0, next_at - time.monotonic()))
        http.close()

    def _create(self, http: Http, case: Case) -> bool:
        """Submit and assess; True when both were acknowledged."""
        try:
            status, body = http.post("/api/v1/reports", {"url": case.url, "category": "csam"})
            if status != 201:
                self._error(self.fleet.node(case.origin), f"submit {status}", body)
                return False
            case.report_id = str(body["id"])
            status, body = http.post(
                f"/api/v1/reports/{case.report_id}/assessment",
                {
                    "verdict": "baseline",
                    "category": "csam",
                    "legal_basis": "baseline (INTERPOL criteria)",
                },
            )
        except Lost:
            return False  # uncertain: judged at the end by what its origin holds
        if status != 200:
            self._error(self.fleet.node(case.origin), f"assess {status}", body)
            return False
        case.acknowledged = True
        return True

    def _post_outcome(self, node: NodeProcess, http: Http) -> None:
        """The destination's outcome on one case that should have arrived by now."""
        due = self._due[node.node_id]
        with self._lock:  # the node's threads share its list
            if not due or due[0].at > time.monotonic():
                return
            item = due.popleft()
        try:
            status, body = http.post(
                f"/api/v1/reports/{item.case.report_id}/actions",
                {"code": "content_removed", "reason": "soak"},
            )
        except Lost:
            item.case.outcome_uncertain = True
            return
        if status == 201:
            item.case.outcome = str(body["id"])
            with self._lock:
                self.outcomes_posted += 1
        elif status == 404 and item.tries < 30:  # not arrived yet (its origin may be down)
            due.append(_Due(time.monotonic() + 2.0, item.case, item.tries + 1))
        else:  # a case still absent after a minute is counted lost at the end anyway
            self._error(node, f"outcome {status}", body)

    def _error(self, node: NodeProcess, what: str, body: Any) -> None:
        """Counted; the first few of each kind logged with their node and time."""
        with self._lock:
            self.errors[what] += 1
            count = self.errors[what]
        if count <= 5:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            self.fleet.log(f"driver: {node.node_id} {what}: {str(detail)[:160]}")


@dataclass
class Outage:
    node: NodeProcess
    kind: str  # "pause" (SIGSTOP) or "stop" (SIGTERM, started again later)
    ends: float


@dataclass
class Chaos:
    """Random SIGKILLs (each followed by a restart) and peer outages, one outage at a time.

    Intervals are drawn between half and one and a half times the given means (0 turns a kind
    off); an outage lasts 20 to 60 s. A kill picks any node that is not in an outage.
    """

    fleet: Fleet
    kill_every: float
    outage_every: float
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    kills: Counter[str] = field(default_factory=Counter)
    outages: Counter[str] = field(default_factory=Counter)
    failure: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join()

    def _guarded(self) -> None:
        try:
            self._run(random.Random(self.seed))
        except BaseException as exc:  # reported by the main thread: the soak fails
            self.failure = exc
            self.fleet.log(f"chaos failed: {exc!r}")

    def _run(self, rng: random.Random) -> None:
        def gap(mean: float) -> float:
            # Uniform around the mean rather than exponential: a short run still sees its
            # share of events, at moments unrelated to the load.
            return rng.uniform(0.5 * mean, 1.5 * mean) if mean > 0 else float("inf")

        next_kill = time.monotonic() + gap(self.kill_every)
        next_outage = time.monotonic() + gap(self.outage_every)
        outage: Outage | None = None
        while not self.stop.wait(0.2):
            now = time.monotonic()
            if outage is not None and now >= outage.ends:
                self._end(outage)
                outage = None
                next_outage = time.monotonic() + gap(self.outage_every)
            if now >= next_kill:
                candidates = [n for n in self.fleet.nodes if outage is None or n is not outage.node]
                self._kill(rng.choice(candidates))
                next_kill = time.monotonic() + gap(self.kill_every)
            if outage is None and now >= next_outage:
                outage = self._begin(rng)
        if outage is not None:
            self._end(outage)

    def _kill(self, node: NodeProcess) -> None:
        assert node.process is not None
        pid = node.process.pid
        self.fleet.set_up(node, False)
        node.stop(signal.SIGKILL)
        self.kills[node.node_id] += 1
        self.fleet.log(f"kill -9 {node.node_id} (pid {pid})")
        asked = time.monotonic()
        self.fleet.start(node)
        self.fleet.log(f"restarted {node.node_id} in {time.monotonic() - asked:.1f} s")

    def _begin(self, rng: random.Random) -> Outage:
        node = rng.choice(self.fleet.nodes)
        kind = rng.choice(("pause", "stop"))
        seconds = rng.uniform(20.0, 60.0)
        self.fleet.set_up(node, False)
        if kind == "pause":
            node.pause()
            self.fleet.log(f"outage: SIGSTOP {node.node_id} for {seconds:.0f} s")
        else:
            node.stop()
            self.fleet.log(f"outage: {node.node_id} stopped for {seconds:.0f} s")
        self.outages[kind] += 1
        return Outage(node, kind, time.monotonic() + seconds)

    def _end(self, outage: Outage) -> None:
        if outage.kind == "pause":
            outage.node.resume()
            self.fleet.set_up(outage.node, True)
            self.fleet.log(f"outage over: SIGCONT {outage.node.node_id}")
        else:
            self.fleet.start(outage.node)
            self.fleet.log(f"outage over: {outage.node.node_id} started")


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def pending(node: NodeProcess) -> tuple[int, int] | None:
    """Records waiting in the node's peer outboxes, and cases waiting for their trace (read
    only, off the partial indexes; readable while the node is stopped or paused)."""
    try:
        with sqlite3.connect(f"file:{node.root / 'node.sqlite3'}?mode=ro", uri=True) as conn:
            queued = conn.execute(
                "SELECT COUNT(*) FROM peer_outbox WHERE state = 'pending'"
            ).fetchone()[0]
            tracing = conn.execute(
                "SELECT COUNT(*) FROM reports WHERE trace_status = 'pending'"
            ).fetchone()[0]
        return int(queued), int(tracing)
    except sqlite3.Error:
        return None


@dataclass
class Sampler:
    """Every `every` seconds: each node process's RSS and its peer queue depth."""

    fleet: Fleet
    every: float = 10.0
    stop: threading.Event = field(default_factory=threading.Event)
    # node id -> pid -> samples of that process
    rss: dict[str, dict[int, list[Sample]]] = field(default_factory=dict)
    max_queue: Counter[str] = field(default_factory=Counter)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        rounds = 0
        while not self.stop.wait(self.every):
            rounds += 1
            line = []
            for node in self.fleet.nodes:
                process = node.process
                mib = rss_mib(process.pid) if process is not None else None
                if process is not None and mib is not None and process.pid in self.fleet.started:
                    age = time.monotonic() - self.fleet.started[process.pid]
                    per_pid = self.rss.setdefault(node.node_id, {})
                    per_pid.setdefault(process.pid, []).append(Sample(age, mib))
                depth = pending(node)
                if depth is not None:
                    self.max_queue[node.node_id] = max(self.max_queue[node.node_id], depth[0])
                line.append(
                    f"{node.node_id} {'-' if mib is None else f'{mib:.1f}'} MiB"
                    f" q{'-' if depth is None else depth[0]}"
                )
            if rounds % 6 == 0:  # a line a minute
                self.fleet.log("sample: " + ", ".join(line))
