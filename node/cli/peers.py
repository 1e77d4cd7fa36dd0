"""Peer hotlines: add (pinning a fingerprint), list, show, suspend, resume, remove, policy."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.app import Node
from node.cli.base import PEER_HELP, Command, Context, Declare, UsageError, values
from node.output import fields, table
from peers.model import PeerMode
from protocol.records import Tlp

PEER_COLUMNS = [
    "node_id",
    "country",
    "status",
    "mode",
    "max_tlp",
    "share_hashes",
    "last_contact_at",
    "delivered",
    "received",
    "endpoint",
]


def _categories(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


PINNED = ("node_id", "country", "endpoint", "fingerprint")


async def cmd_peers_add(args: argparse.Namespace, ctx: Context) -> int:
    if args.from_directory:
        return await _add_from_directory(args, ctx)
    missing = [name for name in PINNED if not getattr(args, name)]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise UsageError(
            f"peers add needs {flags} (or --from-directory ID, for a member of the directory"
            " this node trusts)"
        )
    document = None
    if args.key_document:
        path = Path(args.key_document)
        try:
            document = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from exc

    async def run(node: Node) -> int:
        peer = await node.admin.add(
            node_id=args.node_id,
            country=args.country,
            endpoint=args.endpoint,
            fingerprint=args.fingerprint,
            pull_only=args.pull_only,
            categories=_categories(args.categories),
            max_tlp=args.max_tlp,
            key_document=document,
            actor=ctx.actor(args),
        )
        ctx.show(
            args,
            peer,
            f"added {peer['node_id']} ({peer['country']}): key document "
            f"verified against fingerprint {peer['fingerprint']}",
        )
        return 0

    return await ctx.with_node(args, run)


async def _add_from_directory(args: argparse.Namespace, ctx: Context) -> int:
    given = [name for name in (*PINNED, "key_document") if getattr(args, name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"--from-directory takes the member's country, endpoint and fingerprint from the"
            f" list; leave out {flags}"
        )

    async def run(node: Node) -> int:
        peer = await node.directory.add_member(
            args.from_directory,
            actor=ctx.actor(args),
            pull_only=args.pull_only,
            categories=_categories(args.categories),
            max_tlp=args.max_tlp,
        )
        ctx.show(
            args,
            peer,
            f"added {peer['node_id']} ({peer['country']}) from the member directory: key"
            f" document verified against fingerprint {peer['fingerprint']}",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_peers_list(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        from node.federation.registry import summary

        rows = [summary(row) for row in await node.registry.all()]
        ctx.show(args, rows, table(rows, PEER_COLUMNS, ctx.colour))
        return 0

    return await ctx.with_node(args, run)


async def cmd_peers_show(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        peer = await node.registry.describe(args.id)
        listed = ("keys", "actions_on_unknown_cases")
        text = fields(peer, [k for k in peer if k not in listed], ctx.colour)
        keys = table(
            peer["keys"], ["purpose", "kid", "not_before", "not_after", "revoked"], ctx.colour
        )
        text = f"{text}\n\nkeys\n{keys}"
        if peer["actions_on_unknown_cases"]:
            kept = table(peer["actions_on_unknown_cases"], ["report_id", "code", "at"], ctx.colour)
            text += f"\n\nits actions on a case not held here (kept)\n{kept}"
        ctx.show(args, peer, text)
        return 0

    return await ctx.with_node(args, run)


def _peer_status(status: str) -> Command:
    async def command(args: argparse.Namespace, ctx: Context) -> int:
        async def run(node: Node) -> int:
            peer = await node.admin.set_status(args.id, status, ctx.actor(args))
            ctx.show(args, peer, f"{args.id}: {peer['status']}")
            return 0

        return await ctx.with_node(args, run)

    return command


async def cmd_peers_requeue(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        count = await node.registry.requeue_dead(args.id, ctx.actor(args))
        ctx.show(
            args,
            {"node_id": args.id, "requeued": count},
            f"{args.id}: {count} rejected record(s) queued again",
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_peers_policy(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        pull = None if args.mode is None else args.mode == "pull"
        peer = await node.admin.set_policy(
            args.id,
            categories=_categories(args.categories),
            max_tlp=args.max_tlp,
            pull_only=pull,
            share_hashes=args.share_hashes,
            actor=ctx.actor(args),
        )
        hashes = "shared" if peer["share_hashes"] else "not shared"
        ctx.show(
            args,
            peer,
            f"{args.id}: categories {','.join(peer['categories'])}, max TLP "
            f"{peer['max_tlp']}, mode {peer['mode']}, hash lists {hashes}",
        )
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    peers = cli.group("peers", "peer hotlines")
    p = cli.command(
        peers,
        "add",
        cmd_peers_add,
        "fetch a peer's key document, check it against the fingerprint, pin it",
    )
    p.add_argument("--node-id", help="the peer's node id, e.g. de-eco")
    p.add_argument("--country", help="the peer's ISO 3166-1 alpha-2 country")
    p.add_argument("--endpoint", help="the peer's URL, e.g. https://node.eco.example")
    p.add_argument(
        "--fingerprint",
        help="identity fingerprint the peer's operator gave you out of band",
    )
    p.add_argument(
        "--from-directory",
        metavar="ID",
        help="a member of the directory this node trusts (directory status lists proposals):"
        " its country, endpoint and fingerprint come from the list held",
    )
    p.add_argument(
        "--pull-only",
        action="store_true",
        help="the peer cannot accept connections: it collects records itself",
    )
    p.add_argument("--categories", help="comma-separated categories it accepts (default all)")
    p.add_argument(
        "--max-tlp",
        choices=values(Tlp),
        help="the highest TLP it may receive",
    )
    p.add_argument(
        "--key-document",
        metavar="FILE",
        help="the peer's signed key document as a file (from its `keys document`), for a "
        "pull-only peer this node cannot reach; checked against --fingerprint all the same",
    )
    cli.command(peers, "list", cmd_peers_list, "all peers with status and counters")
    p = cli.command(peers, "show", cmd_peers_show, "one peer: keys, queue depth, backoff, errors")
    p.add_argument("id", help=PEER_HELP)
    for name, status, text in (
        ("suspend", "suspended", "stop exchanging with a peer"),
        ("resume", "active", "exchange with a suspended peer again"),
        ("remove", "removed", "forget a peer (history is kept)"),
    ):
        p = cli.command(peers, name, _peer_status(status), text)
        p.add_argument("id", help=PEER_HELP)
    p = cli.command(
        peers,
        "requeue",
        cmd_peers_requeue,
        "queue again the records a peer rejected (after fixing the cause)",
    )
    p.add_argument("id", help=PEER_HELP)
    p = cli.command(peers, "policy", cmd_peers_policy, "what a peer may receive")
    p.add_argument("id", help=PEER_HELP)
    p.add_argument("--categories", help="comma-separated categories it accepts")
    p.add_argument(
        "--max-tlp",
        choices=values(Tlp),
        help="the highest TLP it may receive",
    )
    p.add_argument(
        "--mode", choices=values(PeerMode), help="push: we send; pull: it collects from us"
    )
    p.add_argument(
        "--share-hashes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exchange hash lists with it: our shared lists go to it (whole, when turned on) "
        "and its lists are taken from it; --no-share-hashes stops both",
    )
