"""Operations: sync with peers now, statistics, tracing a URL, checking the audit log."""

from __future__ import annotations

import argparse
from pathlib import Path

from node import stats
from node.app import Node
from node.cli.base import Context, Declare
from node.errors import NotFound
from node.output import table
from node.store import audit
from node.urls import normalise_url


async def cmd_sync(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = await node.registry.all()
        targets = [r for r in rows if args.peer is None or r.node_id == args.peer]
        if args.peer is not None and not targets:
            raise NotFound(f"no peer {args.peer!r}")
        progress = ctx.progress(args.json)
        results = []
        for row in targets:
            peer_id = row.node_id
            pushed = await node.delivery.push(peer_id, force=True, progress=progress)
            outcome = {
                "peer": peer_id,
                "sent": pushed.sent,
                "rejected": pushed.rejected,
                "pulled": 0,
                "error": pushed.error,
                "skipped": pushed.skipped,
            }
            if node.config.federation.pull_from_peers:
                pulled = await node.delivery.pull(peer_id, progress=progress)
                outcome["pulled"] = pulled.pulled
                outcome["error"] = outcome["error"] or pulled.error
            results.append(outcome)
            if progress is not None:
                ctx.note("")
        ctx.show(
            args,
            results,
            table(results, ["peer", "sent", "rejected", "pulled", "skipped", "error"], ctx.colour),
        )
        return 1 if any(r["error"] for r in results) else 0

    return await ctx.with_node(args, run)


# stats -------------------------------------------------------------------------------------
async def cmd_stats(args: argparse.Namespace, ctx: Context) -> int:
    period = stats.Period.parse(args.since, args.until)

    async def run(node: Node) -> int:
        document = await stats.collect(node.db, node_id=node.config.node_id, period=period)
        if args.csv:
            stats.write_csv(document, Path(args.csv))
            ctx.note(f"wrote {args.csv}")
        ctx.show(args, document, stats.render_text(document, ctx.colour))
        return 0

    return await ctx.with_node(args, run)


async def cmd_trace(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        # The same rules as intake and the API: a URL that could not be reported is not traced.
        evidence = await node.trace_url(normalise_url(args.url))
        text = "\n".join(
            [
                f"host     {evidence['host']}",
                f"cnames   {' -> '.join(evidence['cnames']) or '-'}",
                f"countries {', '.join(evidence['countries']) or '-'}   cdn "
                f"{evidence['cdn_name'] or ('yes' if evidence['cdn'] else 'no')}",
                f"abuse    {evidence['abuse_contact'] or '-'}",
                table(
                    evidence["addresses"],
                    ["ip", "country", "basis", "source", "source_date", "asn", "cdn"],
                    ctx.colour,
                ),
                *[f"note: {e}" for e in evidence["errors"]],
            ]
        )
        ctx.show(args, evidence, text)
        return 0

    return await ctx.with_node(args, run)


async def cmd_audit_verify(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        result = await audit.verify(node.db)
        data = {
            "ok": result.ok,
            "entries": result.entries,
            "first_broken": result.first_broken,
            "problem": result.problem,
            **({"head": result.head} if result.ok else {}),
        }
        if result.ok:
            ctx.show(
                args,
                data,
                f"audit log intact: {result.entries} entries verified; head {result.head}\n"
                "(keep the count and head elsewhere: a later run shows any entry removed since)",
            )
            return 0
        ctx.show(args, data, f"audit log BROKEN at entry {result.first_broken}: {result.problem}")
        return 3

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    p = cli.command(cli.top, "sync", cmd_sync, "run one round of delivery (and pull) now")
    p.add_argument("--peer", help="only this peer")

    p = cli.command(
        cli.top,
        "stats",
        cmd_stats,
        "counts by category, country, status and peer; time to removal and to forwarding",
    )
    p.add_argument("--since", help="reports received from this day (YYYY-MM-DD) or time on")
    p.add_argument("--until", help="reports received up to this day (inclusive) or time")
    p.add_argument("--csv", metavar="FILE", help="also write the figures to FILE as CSV")

    p = cli.command(
        cli.top, "trace", cmd_trace, "jurisdiction evidence for a URL (never contacts it)"
    )
    p.add_argument("url", help="the URL whose host is traced (DNS, IP data and RDAP only)")
    audit_cmds = cli.group("audit", "audit log")
    cli.command(audit_cmds, "verify", cmd_audit_verify, "check the audit hash chain end to end")
