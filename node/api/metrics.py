"""`GET /metrics` in the Prometheus text format: queues, peers, cases, audit, HTTP requests.

Written by hand: the format is a few lines of text, and the figures that matter live in the
database, read at scrape time, so a client library would only add a dependency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from node.api.context import context
from node.clock import iso
from node.store import directory as directory_store
from node.store.db import Database
from node.store.disk import DiskSpace
from node.store.metrics import store_figures

log = logging.getLogger("hotline.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; from a fast read of the store to a slow trace (DNS and RDAP lookups).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1


class HttpMetrics:
    """Request counts and latency per route template (never the raw path: ids, URLs)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.setdefault((method, route), _Histogram()).observe(seconds)

    def render(self) -> list[str]:
        lines = _header(
            "hotline_http_requests_total", "counter", "HTTP requests answered, by route and status."
        )
        for (method, route, status), count in sorted(self.requests.items()):
            counted: Labels = (("method", method), ("route", route), ("status", str(status)))
            lines.append(_sample("hotline_http_requests_total", counted, count))
        name = "hotline_http_request_duration_seconds"
        lines += _header(name, "histogram", "Time to answer an HTTP request, by route.")
        for (method, route), histogram in sorted(self.latency.items()):
            labels: Labels = (("method", method), ("route", route))
            for bound, count in zip(BUCKETS, histogram.buckets, strict=True):
                lines.append(_sample(f"{name}_bucket", (*labels, ("le", _number(bound))), count))
            lines.append(_sample(f"{name}_bucket", (*labels, ("le", "+Inf")), histogram.count))
            lines.append(_sample(f"{name}_sum", labels, histogram.total))
            lines.append(_sample(f"{name}_count", labels, histogram.count))
        return lines


HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: it sees the status the client gets, problem+json included."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route(request)
        request.app[HTTP_METRICS].observe(request.method, route, status, elapsed)
        # No client address, query or headers: reporters' addresses and reported URLs are
        # personal or sensitive data, and headers carry credentials.
        log.info(
            "%s %s %d",
            request.method,
            route,
            status,
            extra={
                "method": request.method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )


# the text format ------------------------------------------------------------------------------
def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _sample(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}"
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
    return f"{name}{{{inner}}} {_number(value)}"


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Labels, float]]
) -> list[str]:
    return [*_header(name, kind, help_text), *(_sample(name, lab, v) for lab, v in samples)]


async def store_metrics(db: Database, now: str) -> list[str]:
    """Figures read from the database at scrape time."""
    figures = await store_figures(db)
    peers, outbox, channels = figures.peers, figures.peer_outbox, figures.channel_outbox

    # Peers with nothing queued still get a 0, so that alerts see them.
    peer_ids = sorted({p.node_id for p in peers} | {peer for peer, _ in outbox})
    # The label is `channel` (published), but what it names is a routing role.
    roles = sorted({role for role, _ in channels})
    in_backoff = {p.node_id for p in peers if p.backoff_until is not None and p.backoff_until > now}

    def per_peer(state: str) -> list[tuple[Labels, float]]:
        return [((("peer", p),), outbox.get((p, state), 0)) for p in peer_ids]

    def per_channel(state: str) -> list[tuple[Labels, float]]:
        return [((("channel", role),), channels.get((role, state), 0)) for role in roles]

    return [
        *_family(
            "hotline_peer_queue_depth",
            "gauge",
            "Records waiting in a peer's outbox.",
            per_peer("pending"),
        ),
        *_family(
            "hotline_peer_delivered_total",
            "counter",
            "Records a peer has taken (pushed and receipted, or pulled).",
            per_peer("sent"),
        ),
        *_family(
            "hotline_peer_dead_letters_total",
            "counter",
            "Records refused for good, by peer and direction (out: it refused ours).",
            [
                ((("peer", d.peer_id), ("direction", d.direction)), d.count)
                for d in figures.dead_letters
            ],
        ),
        *_family(
            "hotline_peer_backoff",
            "gauge",
            "1 while delivery to the peer is backing off after a failure.",
            [((("peer", p),), int(p in in_backoff)) for p in peer_ids],
        ),
        *_family(
            "hotline_peers_in_backoff",
            "gauge",
            "Peers whose delivery is backing off.",
            [((), len(in_backoff))],
        ),
        *_family(
            "hotline_peers",
            "gauge",
            "Peers by status.",
            [
                ((("status", s),), sum(1 for p in peers if p.status == s))
                for s in sorted({p.status for p in peers})
            ],
        ),
        *_family(
            "hotline_channel_queue_depth",
            "gauge",
            "Messages waiting in a national channel's outbox.",
            per_channel("pending"),
        ),
        *_family(
            "hotline_channel_delivered_total",
            "counter",
            "Messages a national channel delivered.",
            per_channel("delivered"),
        ),
        *_family(
            "hotline_channel_dead_total",
            "counter",
            "Messages a national channel gave up on.",
            per_channel("dead"),
        ),
        *_family(
            "hotline_reports",
            "gauge",
            "Cases by status.",
            [((("status", s),), n) for s, n in figures.reports_by_status.items()],
        ),
        *_family(
            "hotline_reports_trace_pending",
            "gauge",
            "Cases waiting for their jurisdiction trace.",
            [((), figures.trace_pending)],
        ),
        *_family(
            "hotline_audit_log_entries",
            "gauge",
            "Entries in the audit log's hash chain.",
            [((), figures.audit_entries)],
        ),
    ]


async def directory_metrics(db: Database, now: int) -> list[str]:
    """The member list held (protocol.md §14.6): nothing when no directory is trusted; version
    and members 0 until a first list is accepted. An expired list stays in force (its peers
    keep working), so alert on `hotline_directory_expired`, not on a missing refresh."""
    row = await directory_store.get(db)
    if row is None:
        return []
    lines = _family(
        "hotline_directory_version",
        "gauge",
        "Version of the member list held (0: none accepted yet).",
        [((), row.list_version or 0)],
    )
    if row.list_expires is not None:
        lines += _family(
            "hotline_directory_expires_timestamp_seconds",
            "gauge",
            "When the member list held expires (Unix seconds).",
            [((), row.list_expires)],
        )
        lines += _family(
            "hotline_directory_expired",
            "gauge",
            "1 once the member list held has expired and no newer one was accepted.",
            [((), int(now >= row.list_expires))],
        )
    lines += _family(
        "hotline_directory_members",
        "gauge",
        "Members in the member list held.",
        [((), row.list_members or 0)],
    )
    return lines


def disk_metrics(disk: DiskSpace) -> list[str]:
    """The data directory's file system: what is free, and whether writes find it full."""
    usage = disk.usage()
    lines: list[str] = []
    if usage is not None:
        lines += _family(
            "hotline_disk_free_bytes",
            "gauge",
            "Bytes free on the data directory's file system (new work is refused when full).",
            [((), usage.free)],
        )
        lines += _family(
            "hotline_disk_size_bytes",
            "gauge",
            "Size of the data directory's file system.",
            [((), usage.size)],
        )
    lines += _family(
        "hotline_disk_full",
        "gauge",
        "1 while writes find the disk full: new work is refused (507), deliveries wait.",
        [((), int(disk.full))],
    )
    return lines


async def metrics(request: web.Request) -> web.Response:
    cases = context(request).cases
    now = cases.clock.now()
    lines = await store_metrics(cases.db, iso(now))
    lines += await directory_metrics(cases.db, int(now.timestamp()))
    lines += disk_metrics(cases.db.disk)
    lines += request.app[HTTP_METRICS].render()
    return web.Response(
        body=("\n".join(lines) + "\n").encode("utf-8"),
        headers={"Content-Type": CONTENT_TYPE},
    )


def add_routes(app: web.Application, counts: HttpMetrics | None = None) -> None:
    """The route; the middleware must be in the application's list (see server.make_app).
    `counts` shared with the public listener's application makes /metrics count its requests."""
    app[HTTP_METRICS] = counts or HttpMetrics()
    app.router.add_get("/metrics", metrics)
