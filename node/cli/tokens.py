"""API tokens: create, list, revoke."""

from __future__ import annotations

import argparse

from node.app import Node
from node.cli.base import Context, Declare
from node.output import table
from node.tokens import token_label
from node.users import person_key


async def cmd_tokens_create(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        token = await node.tokens.create(
            args.role, args.name, actor=ctx.actor(args), person=args.for_person
        )
        person = person_key(args.for_person) if args.for_person else None
        name = token_label(args.name, person)
        data = {"token": token, "role": args.role, "name": name, "person": person}
        ctx.show(args, data, token)
        if not args.json:
            ctx.note("store it now: it is shown only once")
        return 0

    return await ctx.with_node(args, run)


async def cmd_tokens_list(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = await node.tokens.list_tokens()
        ctx.show(
            args,
            rows,
            table(rows, ["id", "role", "name", "person", "created_at", "revoked_at"], ctx.colour),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_tokens_revoke(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        await node.tokens.revoke(args.id, actor=ctx.actor(args))
        ctx.show(args, {"id": args.id, "revoked": True}, f"revoked token {args.id}")
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    tokens = cli.group("tokens", "API tokens")
    p = cli.command(tokens, "create", cmd_tokens_create, "print a new API token (stored hashed)")
    p.add_argument(
        "--role",
        required=True,
        choices=["analyst", "operator"],
        help="analyst: cases and trace; operator: also peers and channels",
    )
    p.add_argument("--name", help="a label for the token (default: the person's name)")
    p.add_argument(
        "--for",
        dest="for_person",
        metavar="NAME",
        help="the person (see users list) it belongs to: the API records their name, as the"
        " console does; without it, a token of no one, which gives no verdict needing review",
    )

    cli.command(
        tokens, "list", cmd_tokens_list, "tokens with role, holder and state (never the secret)"
    )
    p = cli.command(tokens, "revoke", cmd_tokens_revoke, "refuse a token from now on")
    p.add_argument("id", help="the token id (the hex part after hln_, see tokens list)")
