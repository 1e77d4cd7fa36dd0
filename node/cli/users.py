"""People who use the console: add, list, role, disable, enable, reset."""

from __future__ import annotations

import argparse
from typing import Any

from node.app import Node
from node.cli.base import Context, Declare, values
from node.output import table
from node.users import UserRole


def _secret_text(name: str, secret: Any) -> str:
    lines = [f"password for {name}: {secret.password}"]
    if secret.totp_uri:
        lines.append(f"TOTP secret: {secret.totp_secret}")
        lines.append(f"TOTP URI (for an authenticator app): {secret.totp_uri}")
    return "\n".join(lines)


async def cmd_users_add(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        secret = await node.users.add(args.name, args.role, totp=args.totp, actor=ctx.actor(args))
        ctx.show(
            args,
            {
                "name": args.name,
                "role": args.role,
                "password": secret.password,
                "totp_secret": secret.totp_secret,
                "totp_uri": secret.totp_uri,
            },
            _secret_text(args.name, secret),
        )
        if not args.json:
            ctx.note("give it to them now: it is shown only once")
        return 0

    return await ctx.with_node(args, run)


async def cmd_users_list(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = await node.users.list_users()
        ctx.show(
            args, rows, table(rows, ["name", "role", "state", "totp", "created_at"], ctx.colour)
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_users_disable(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        await node.users.disable(args.name, actor=ctx.actor(args))
        ctx.show(args, {"name": args.name, "disabled": True}, f"disabled {args.name}")
        return 0

    return await ctx.with_node(args, run)


async def cmd_users_role(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        await node.users.set_role(args.name, args.role, actor=ctx.actor(args))
        ctx.show(args, {"name": args.name, "role": args.role}, f"{args.name} is {args.role}")
        return 0

    return await ctx.with_node(args, run)


async def cmd_users_enable(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        await node.users.enable(args.name, actor=ctx.actor(args))
        ctx.show(args, {"name": args.name, "disabled": False}, f"enabled {args.name}")
        return 0

    return await ctx.with_node(args, run)


async def cmd_users_reset(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        secret = await node.users.reset(args.name, totp=args.totp, actor=ctx.actor(args))
        ctx.show(
            args,
            {
                "name": args.name,
                "password": secret.password,
                "totp_secret": secret.totp_secret,
                "totp_uri": secret.totp_uri,
            },
            _secret_text(args.name, secret),
        )
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    users = cli.group("users", "people who use the console")
    p = cli.command(users, "add", cmd_users_add, "a new person; prints their first password once")
    p.add_argument("name", help="lower-case login name, e.g. alice")
    p.add_argument(
        "--role",
        required=True,
        choices=values(UserRole),
        help="analyst: cases; reviewer: also confirms verdicts under four-eyes; operator: the node",
    )
    p.add_argument("--totp", action="store_true", help="also a second factor (TOTP)")
    cli.command(users, "list", cmd_users_list, "people with role and state (never a secret)")
    p = cli.command(
        users, "disable", cmd_users_disable, "refuse a person from now on; signs them out"
    )
    p.add_argument("name", help="the person's login name (see users list)")
    p = cli.command(users, "role", cmd_users_role, "give a person another role; signs them out")
    p.add_argument("name", help="the person's login name (see users list)")
    p.add_argument("role", choices=values(UserRole), help="their new role")
    p = cli.command(
        users, "enable", cmd_users_enable, "let a disabled person sign in again (reset does not)"
    )
    p.add_argument("name", help="the person's login name (see users list)")
    p = cli.command(
        users,
        "reset",
        cmd_users_reset,
        "a new password (and TOTP secret); signs out; a disabled person stays disabled",
    )
    p.add_argument("name", help="the person's login name (see users list)")
    p.add_argument("--totp", action="store_true", help="add a second factor if there is none")
