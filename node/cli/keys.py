"""Node keys: show, rotate, publish the key document, revoke one key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.app import Node
from node.cli.base import Context, Declare
from node.clock import iso
from node.output import table
from node.store import audit
from node.store.db import Tx


def _key_rows(node: Node) -> list[dict[str, Any]]:
    now = node.clock.now()
    rows = []
    keys: tuple[tuple[str, list[Any]], ...] = (
        ("sig", node.keyring.current.signing),
        ("enc", node.keyring.current.encryption),
        ("hyb", node.keyring.current.hybrid),  # hybrid post-quantum (protocol.md §6.3)
    )
    for purpose, entries in keys:
        for key in entries:
            state = (
                "revoked"
                if key.kid in node.keyring.current.revoked
                else "valid"
                if key.validity.covers(now)
                else "expired"
                if key.validity.not_after <= now
                else "future"
            )
            rows.append(
                {
                    "purpose": purpose,
                    "kid": key.kid,
                    "state": state,
                    "not_before": iso(key.validity.not_before),
                    "not_after": iso(key.validity.not_after),
                }
            )
    return rows


async def cmd_keys_show(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        rows = _key_rows(node)
        data = {
            "node_id": node.config.node_id,
            "country": node.config.country,
            "fingerprint": node.keyring.current.fingerprint,
            "keys": rows,
        }
        ctx.show(
            args,
            data,
            f"node {node.config.node_id} ({node.config.country})\n"
            f"identity fingerprint: {node.keyring.current.fingerprint}\n\n"
            + table(rows, ["purpose", "kid", "state", "not_before", "not_after"], ctx.colour),
        )
        return 0

    return await ctx.with_node(args, run)


async def _audit_keys(node: Node, event: str, details: dict[str, Any], actor: str) -> None:
    def audit_keys_txn(conn: Tx) -> None:
        audit.append(
            conn,
            at=node.clock.now(),
            actor=actor,
            event=event,
            subject=node.config.node_id,
            details=details,
        )

    await node.db.run(audit_keys_txn)


async def cmd_keys_rotate(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        node.keyring.rotate(node.clock.now())
        await _audit_keys(node, "keys.rotated", {}, ctx.actor(args))
        rows = _key_rows(node)
        ctx.show(
            args,
            {"keys": rows},
            "rotated; older keys stay valid for the overlap period\n"
            + table(rows, ["purpose", "kid", "state", "not_after"], ctx.colour),
        )
        return 0

    return await ctx.with_node(args, run)


async def cmd_keys_document(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        document = node.key_document()
        if args.output:
            Path(args.output).write_bytes(document + b"\n")
            ctx.note(f"wrote {args.output}")
        else:
            ctx.out.write(document.decode("ascii") + "\n")
        return 0

    return await ctx.with_node(args, run)


async def cmd_keys_revoke(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        node.keyring.revoke(args.kid, node.clock.now())
        await _audit_keys(node, "keys.revoked", {"kid": args.kid}, ctx.actor(args))
        ctx.show(args, {"revoked": args.kid, "keys": _key_rows(node)}, f"revoked {args.kid}")
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    keys = cli.group("keys", "node keys")
    cli.command(keys, "show", cmd_keys_show, "node id, fingerprint, keys with validity")
    cli.command(keys, "rotate", cmd_keys_rotate, "new signing and encryption keys, with overlap")
    p = cli.command(
        keys,
        "document",
        cmd_keys_document,
        "print this node's signed key document (for a peer that cannot reach this node)",
    )
    p.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    p = cli.command(keys, "revoke", cmd_keys_revoke, "revoke one key by its id")
    # A key id may begin with "-": the parser takes its shape as a value (base.Parser).
    p.add_argument("kid", help="the key id (see keys show)")
