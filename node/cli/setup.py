"""Creating a node's data directory, and serving it."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from node import locks
from node.app import open_node
from node.cli.base import Context, Declare, UsageError
from node.clock import SystemClock
from node.config import parse_config
from node.datadir import DataDir, create_data_dir
from node.store import audit
from node.store.db import Database, Tx


async def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    data_dir = DataDir.resolve(args.data_dir)
    raw: dict[str, Any] = {
        "node_id": args.node_id,
        "country": args.country,
        "endpoint": args.endpoint or f"http://{args.listen}",
        "listen": args.listen,
    }
    if args.dns_server:
        raw["jurisdiction"] = {"dns_server": args.dns_server}
    if args.police_first_hours < 0:
        raise UsageError("--police-first-hours must be 0 (no hold) or more")
    if args.police_first_hours:
        # Law enforcement first for CSAM, as most hotlines agree with their police: the host
        # notice waits until the police clear the case, or until this deadline.
        raw["notices"] = {"lea_first_hours": {"csam": args.police_first_hours}}
    config = parse_config(raw, "command line")
    clock = SystemClock()
    keys = create_data_dir(data_dir, config, clock)
    db = await Database.open(data_dir.database)
    try:

        def init_txn(conn: Tx) -> None:
            audit.append(
                conn,
                at=clock.now(),
                actor=ctx.actor(args),
                event="node.initialised",
                subject=config.node_id,
                # open_node checks the country against this: peers pinned it.
                details={
                    "fingerprint": keys.fingerprint,
                    "node_id": config.node_id,
                    "country": config.country,
                },
            )

        await db.run(init_txn)
    finally:
        await db.close()
    ctx.show(
        args,
        {
            "node_id": config.node_id,
            "country": config.country,
            "data_dir": str(data_dir.root),
            "fingerprint": keys.fingerprint,
        },
        f"initialised {config.node_id} ({config.country}) in {data_dir.root}\n"
        f"identity fingerprint: {keys.fingerprint}\n"
        "give this fingerprint to peer hotlines out of band; next: hotline-node tokens create",
    )
    return 0


async def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from node import logs
    from node.cli.main import runner_for  # the parser of every group: built on top of this one

    data_dir = DataDir.resolve(args.data_dir)

    def waiting() -> None:
        ctx.note("waiting for commands working on the data directory to finish…")

    # For the whole run, opening the node included: its warnings are in the same format.
    with logs.configured(args.log_format, args.log_level), locks.serving(data_dir, waiting):
        async with open_node(data_dir, SystemClock()) as node:
            for warning in await node.dispatcher.warnings():
                logging.getLogger("hotline.channels").warning("%s", warning)

            def ready() -> None:
                # In the logs' format: a log collector reads this line too.
                logs.announce(
                    args.log_format,
                    f"{node.config.node_id} listening on http://{node.config.listen}",
                    listen=f"http://{node.config.listen}",
                )

            await node.serve(commands=runner_for(node), ready=ready)
    return 0


def register(cli: Declare) -> None:
    p = cli.command(
        cli.top, "init", cmd_init, "create a node's data directory: config, keys, database"
    )
    p.add_argument("--node-id", required=True, help="lower-case id, e.g. fr-pointdecontact")
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. FR")
    p.add_argument("--endpoint", help="URL peers use to reach this node")
    p.add_argument("--listen", default="127.0.0.1:8700", help="HOST:PORT to listen on")
    p.add_argument("--dns-server", help="HOST:PORT of the resolver used for jurisdiction")
    p.add_argument(
        "--police-first-hours",
        type=int,
        default=48,
        metavar="HOURS",
        help="a CSAM host notice waits this long for police clearance (default 48; 0: no hold)",
    )
    p = cli.command(
        cli.top, "serve", cmd_serve, "run the HTTP APIs and scheduled jobs until SIGTERM/SIGINT"
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="stderr log lines as text, or one JSON object per line (default: text)",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="warning",
        help="least severe level logged; info adds one line per HTTP request (default: warning)",
    )
