"""Cases: submit, assess, act, override, list, show, hashes, review, withdraw, clear, recover
(import: its own)."""

from __future__ import annotations

import argparse
from typing import Any

from node.app import Node
from node.cases import CaseStatus
from node.cases.service import ANALYST_ACTIONS
from node.cli import imports
from node.cli.base import REF_HELP, Context, Declare, UsageError, values
from node.federation.recovery import Recovered
from node.output import table
from protocol.records import Category, Tlp, Verdict


def _review_lines(case: dict[str, Any]) -> list[str]:
    review = case.get("review")
    if not review:
        return []
    given = (
        f"review   {review['id']} {review['state']}: {review['verdict']} / {review['category']}"
        f" by {review['analyst']} at {review['requested_at']}"
    )
    if review["state"] == "pending":
        return [
            given,
            f"  waiting for a reviewer: hotline-node reports review {case['id']} --confirm"
            f" --review {review['id']} --as NAME (or --reject --reason TEXT)",
        ]
    decided = f"  {review['state']} by {review['reviewer']} at {review['decided_at']}"
    return [given, decided + (f": {review['reason']}" if review["reason"] else "")]


def _hash_lines(case: dict[str, Any]) -> list[str]:
    lines = []
    for given in case.get("hashes", []):
        value = f"{given['type']}:{given['value']}" + (
            f":{given['quality']}" if given["quality"] is not None else ""
        )
        lines.append(f"hash     {value}  ({given['source']}, {given['added_at']})")
        if given["unmatched_reason"]:
            lines.append(f"  {given['unmatched_reason']}")
    return lines


def _case_text(case: dict[str, Any], colour: bool) -> str:
    a, h, r = case["assessment"], case["hosting"], case["routing"]
    lines = [
        f"report   {case['id']}  ({case['local_ref']})",
        f"url      {case['url']}",
        f"origin   {case['origin']}   status {case['status']}   tlp {case['tlp']}"
        f"   duplicates {case['duplicates']}",
        f"assessed {a['verdict'] or '-'} / {a['category'] or '-'}"
        + (f"  ({a['legal_basis']})" if a["legal_basis"] else ""),
        *_review_lines(case),
        *(
            f"known    {m['known']}: {m['entry']} (distance {m['distance']}, {m['category']})"
            for m in case.get("matches", [])
        ),
        f"hosting  {h['status']}: countries {', '.join(h['countries']) or '-'}"
        f"   cdn {h['cdn_name'] or ('yes' if h['cdn'] else 'no')}"
        f"   abuse {h['abuse_contact'] or '-'}",
    ]
    if h["addresses"]:
        lines.append(
            table(h["addresses"], ["ip", "country", "basis", "source", "asn", "cdn"], colour)
        )
    for error in h["errors"]:
        lines.append(f"  trace note: {error}")
    lines.extend(_hash_lines(case))
    lines.append(f"routing  {r['decision'] or '(not yet)'}")
    for target in r["targets"]:
        lines.append(
            f"  -> {target['kind']} {target['name']} {target['country'] or ''}: {target['reason']}"
        )
    if r["queued"]:
        lines.append(
            table(
                r["queued"],
                ["kind", "name", "state", "record_type", "done_at", "notice_ref", "detail"],
                colour,
            )
        )
    for n, given in enumerate(case.get("submissions", []), 1):
        lines.append(
            f"reported #{n} {given['at']} ({given['source']}, {given['language'] or '-'})"
            f"  contact {given['contact'] or '-'}"
        )
        lines.extend(f"  | {line}" for line in (given["description"] or "-").splitlines())
    lines.append("timeline")
    lines.append(
        table(case["actions"], ["at", "code", "by", "country", "analyst", "reason"], colour)
    )
    return "\n".join(lines)


async def cmd_reports_submit(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        result = await node.cases.submit(
            args.url,
            actor=ctx.actor(args),
            category=args.category,
            note=args.note,
            tlp=args.tlp,
            hashes=args.hashes,
        )
        if not args.no_trace and not result.duplicate:
            await node.trace_pending()
        data = {
            "id": result.report_id,
            "duplicate": result.duplicate,
            "duplicates": result.duplicates,
        }
        text = (
            f"{result.report_id} (joined an existing case; {result.duplicates} duplicate(s))"
            if result.duplicate
            else result.report_id
        )
        ctx.show(args, data, text)
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_assess(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        who = await node.reviews.person_named(ctx.actor(args))
        done = await node.reviews.assess(
            args.id,
            verdict=args.verdict,
            category=args.category,
            legal_basis=args.legal_basis,
            actor=who,
            person=who,
        )
        case = await node.cases.show(args.id)
        ctx.show(args, case, _case_text(case, ctx.colour))
        if done.pending_review and not args.json:
            ctx.note(
                f"this verdict needs a second person: it routes once a reviewer runs"
                f" `hotline-node reports review {args.id} --confirm --review"
                f" {case['review']['id']} --as NAME`"
            )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_action(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        action_id = await node.cases.record_action(
            args.id, code=args.code, reason=args.reason, actor=ctx.actor(args)
        )
        ctx.show(args, {"id": action_id}, f"recorded {args.code} ({action_id})")
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_override(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        await node.cases.override_jurisdiction(
            args.id, country=args.country, reason=args.reason, actor=ctx.actor(args)
        )
        case = await node.cases.show(args.id)
        ctx.show(args, case, _case_text(case, ctx.colour))
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_list(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows, cursor = await node.cases.list_page(
            status=args.status, limit=args.limit, after=args.after
        )
        ctx.show(
            args,
            {"reports": rows, "next": cursor},
            table(
                rows,
                ["id", "status", "verdict", "category", "received_at", "duplicates", "url"],
                ctx.colour,
            )
            + (f"\nmore: --after '{cursor}'" if cursor else ""),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_show(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        found = await node.cases.resolve(args.id)
        if len(found) == 1:
            case = await node.cases.show(found[0])
            ctx.show(args, case, _case_text(case, ctx.colour))
            return 0
        # A grouped notice's reference: the cases it was about.
        cases = [await node.cases.show(report_id) for report_id in found]
        ctx.show(
            args,
            {"reference": args.id, "reports": cases},
            f"notice {args.id} is about {len(cases)} cases\n\n"
            + "\n\n".join(_case_text(case, ctx.colour) for case in cases),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_hashes(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        report_id = await node.cases.resolve_one(args.id)
        added = []
        if args.add:
            added = await node.cases.add_hashes(report_id, args.add, actor=ctx.actor(args))
        case = await node.cases.show(report_id)
        text = "\n".join(_hash_lines(case)) or "no hashes on this case"
        if args.add:
            text += f"\nadded {len(added)} new hash(es); any other given was on the case already"
        ctx.show(
            args,
            {"id": report_id, "added": [value.text for value in added], "hashes": case["hashes"]},
            text,
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_review(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        report_id = await node.cases.resolve_one(args.id)
        if args.confirm:
            if args.review is None:
                raise UsageError(
                    "--confirm needs --review ID, the review you read (see reports show)"
                )
            await node.reviews.confirm(report_id, reviewer=ctx.actor(args), review_id=args.review)
        else:
            await node.reviews.reject(
                report_id, reviewer=ctx.actor(args), reason=args.reason, review_id=args.review
            )
        case = await node.cases.show(report_id)
        ctx.show(args, case, _case_text(case, ctx.colour))
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_withdraw(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        peers = await node.cases.withdraw(args.id, reason=args.reason, actor=ctx.actor(args))
        if peers:
            for peer in peers:  # the tombstone goes now, not with the next sweep
                await node.delivery.push(peer)
        ctx.show(
            args,
            {"id": args.id, "withdrawn": True, "peers": peers},
            f"withdrawn; tombstone queued for {', '.join(peers) or 'no peer'}",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_clear(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        report_id = await node.cases.resolve_one(args.id)
        waiting = await node.cases.clear_for_host(
            report_id, reason=args.reason, actor=ctx.actor(args)
        )
        ctx.show(
            args,
            {"id": report_id, "cleared": True, "released": waiting},
            f"cleared by law enforcement: {waiting} held host notice(s) go with the next dispatch"
            if waiting
            else "clearance recorded; no host notice was waiting for it (one queued later"
            " goes without waiting)",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_reports_recover(args: argparse.Namespace, ctx: Context) -> int:
    def show_progress(done: Recovered) -> None:
        if ctx.tty and not args.json:
            ctx.note(
                f"\r{done.peer}: {done.records} record(s) given back, {done.restored} case(s)"
                " restored",
                "",
            )

    async def run(node: Node) -> int:
        done = await node.recovery.recover_from(
            args.peer, actor=ctx.actor(args), progress=show_progress
        )
        if ctx.tty and not args.json and done.records:
            ctx.note("")
        lines = [
            f"{done.peer} gave back {done.records} record(s) of ours:"
            f" {done.restored} case(s) restored, {done.held} still held here,"
            f" {done.actions} action(s) and withdrawal(s) of ours,"
            f" {done.peer_actions} action(s) of {done.peer}"
        ]
        if done.unverifiable:
            lines.append(
                f"{done.unverifiable} record(s) left out: signed with a key this node no longer"
                " holds (a key rotation after the backup)"
            )
        if done.refused:
            lines.append(
                f"{done.refused} record(s) refused: not what this node signed (see the server log)"
            )
        if done.elsewhere:
            lines.append(f"{done.elsewhere} record(s) about other hotlines' cases not held here")
        ctx.show(args, done.as_dict(), "\n".join(lines))
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    reports = cli.group("reports", "cases")
    p = cli.command(reports, "submit", cmd_reports_submit, "record a report; prints its id")
    p.add_argument("url", help="the reported URL (never fetched)")
    p.add_argument(
        "--category",
        choices=values(Category),
        help="the kind of content, if known",
    )
    p.add_argument("--note", help="free text kept with the case")
    p.add_argument(
        "--tlp",
        choices=values(Tlp),
        help="sharing limit (TLP 2.0; default amber)",
    )
    p.add_argument(
        "--hash",
        dest="hashes",
        action="append",
        metavar="TYPE:VALUE",
        help="a hash of the content, from your own tools or `hashes compute` (repeatable):"
        " sha256:HEX, sha1:HEX, md5:HEX, pdq:HEX or pdq:HEX:QUALITY",
    )
    p.add_argument("--no-trace", action="store_true", help="leave tracing to the running node")
    p = cli.command(reports, "assess", cmd_reports_assess, "qualify a report; routing follows")
    p.add_argument("id", help=REF_HELP)
    p.add_argument(
        "--verdict",
        required=True,
        choices=values(Verdict),
        help="baseline: illegal everywhere; national: illegal here; not_illegal closes the case",
    )
    p.add_argument(
        "--category",
        required=True,
        choices=values(Category),
        help="the kind of content",
    )
    p.add_argument("--legal-basis", help='the law it breaks, e.g. "Art. 227-23 CP"')
    p = cli.command(reports, "action", cmd_reports_action, "record an action on a report")
    p.add_argument("id", help=REF_HELP)
    p.add_argument(
        "--code",
        required=True,
        choices=values(ANALYST_ACTIONS),
        help="what happened",
    )
    p.add_argument("--reason", help="free text kept with the action")
    p = cli.command(
        reports,
        "override",
        cmd_reports_override,
        "set the jurisdiction by hand (with a reason); routing follows",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 code, e.g. DE")
    p.add_argument("--reason", required=True, help="why (kept in the case and the audit log)")
    p = cli.command(reports, "list", cmd_reports_list, "list cases, newest first")
    p.add_argument(
        "--status",
        help=f"only cases in this status: {', '.join(values(CaseStatus))}",
    )
    p.add_argument("--limit", type=int, default=50, help="cases per page, 1-1000 (default 50)")
    p.add_argument(
        "--after", metavar="CURSOR", help="the next page: the cursor the previous page ended with"
    )
    p = cli.command(reports, "show", cmd_reports_show, "one case with its whole timeline")
    p.add_argument("id", help=REF_HELP)
    p = cli.command(
        reports,
        "hashes",
        cmd_reports_hashes,
        "a case's hashes; --add puts more on it (peers holding our case get them)",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument(
        "--add",
        action="append",
        metavar="TYPE:VALUE",
        help="a hash to add (repeatable): sha256:HEX, sha1:HEX, md5:HEX, pdq:HEX[:QUALITY]",
    )
    p = cli.command(
        reports,
        "review",
        cmd_reports_review,
        "four-eyes: confirm or reject another analyst's verdict waiting for review",
    )
    p.add_argument("id", help=REF_HELP)
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument("--confirm", action="store_true", help="agree: the case routes")
    decision.add_argument("--reject", action="store_true", help="disagree: assess it again")
    p.add_argument("--reason", help="why the verdict is rejected (required with --reject)")
    p.add_argument(
        "--review",
        metavar="ID",
        help="the review you read in reports show (required with --confirm): a verdict"
        " given again since is not confirmed by mistake",
    )
    p.set_defaults(needs_as=True)

    imports.register(cli, reports)  # where it stood in the help: after review
    p = cli.command(
        reports,
        "withdraw",
        cmd_reports_withdraw,
        "retract our report; peers that received it close it",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--reason", required=True, help="why (sent to the peers that hold it)")

    p = cli.command(
        reports,
        "clear",
        cmd_reports_clear,
        "law enforcement cleared the case: release a host notice held for them",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--reason", help="e.g. who cleared it and how")

    p = cli.command(
        reports,
        "recover",
        cmd_reports_recover,
        "after restoring an older backup: ask a peer for the records of ours it holds, and"
        " restore the cases we lost",
    )
    p.add_argument(
        "--from",
        dest="peer",
        required=True,
        metavar="PEER",
        help="the peer's node id (run it once for each peer we send cases to)",
    )
