"""National channels: list them, test one, send its dead letters again."""

from __future__ import annotations

import argparse

from node.app import Node
from node.cli.base import Context, Declare
from node.output import table


async def cmd_channels_list(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = await node.dispatcher.describe()
        for warning in await node.dispatcher.warnings():
            ctx.note(f"hotline-node: warning: {warning}")
        ctx.show(
            args,
            rows,
            table(
                rows,
                [
                    "name",
                    "kind",
                    "roles",
                    "categories",
                    "countries",
                    "target",
                    "pending_for_roles",
                    "delivered",
                    "dead",
                ],
                ctx.colour,
            ),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_channels_test(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        outcome = await node.dispatcher.test(args.name, args.to)
        data = {"channel": args.name, "delivered": outcome.delivered, "detail": outcome.detail}
        ctx.show(args, data, f"{'delivered' if outcome.delivered else 'FAILED'}: {outcome.detail}")
        return 0 if outcome.delivered else 1

    return await ctx.with_node(args, run)


async def cmd_channels_requeue(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        count = await node.dispatcher.requeue_dead(args.name, ctx.actor(args))
        ctx.show(
            args,
            {"channel": args.name, "requeued": count},
            f"{args.name}: {count} dead message(s) queued again",
        )
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    channels = cli.group("channels", "national channels")
    cli.command(channels, "list", cmd_channels_list, "configured channels with their counters")
    p = cli.command(channels, "test", cmd_channels_test, "send a marked test message through one")
    p.add_argument("name", help="the channel's name in node.toml (see channels list)")
    p.add_argument("--to", help="recipient for a channel that mails each case's abuse contact")
    p = cli.command(
        channels,
        "requeue",
        cmd_channels_requeue,
        "send again the messages a channel gave up on (after fixing the cause)",
    )
    p.add_argument("name", help="the channel's name in node.toml (see channels list)")
