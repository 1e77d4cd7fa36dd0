"""The `hotline-node` command line: operators and analysts drive a node's data directory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import ContextVar
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from keys import KeysError
from node import control, locks
from node.app import Node, open_node
from node.cases import IMPORT_FIELDS, CaseStatus, ImportItem
from node.cases.service import ANALYST_ACTIONS
from node.clock import SystemClock, iso
from node.config import parse_config
from node.control import CommandRunner
from node.datadir import DataDir, create_data_dir
from node.errors import NodeError, NotFound
from node.importfile import FORMATS, ImportFile, read_import_file
from node.jurisdiction import JurisdictionError
from node.output import emit_json, fields, table
from node.store import audit
from node.store.db import Database, Tx
from node.tokens import token_label
from node.urls import normalise_url
from node.users import UserRole, person_key
from peers.model import PeerMode
from protocol.records import Category, Tlp, Verdict

EPILOG = """examples:
  hotline-node init --node-id fr-pointdecontact --country FR --endpoint https://hotline.example.fr
  hotline-node tokens create --role analyst --name alice
  hotline-node reports submit https://files.example.net/a/b.jpg --category csam
  hotline-node reports assess ID --verdict baseline --category csam --legal-basis "Art. 227-23"
  hotline-node reports show ID --json
  hotline-node trace https://files.example.net/a/b.jpg
  hotline-node peers add --node-id de-eco --country DE --endpoint https://node.eco.example \\
      --fingerprint <the fingerprint de-eco's operator gave you>
  hotline-node sync
"""

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """A command line that cannot work (checked before anything is touched)."""


def values(words: Iterable[StrEnum]) -> list[str]:
    """A vocabulary's words as command-line choices, in the order the vocabulary gives them."""
    return [word.value for word in words]


def os_user() -> str:
    """The operating-system user running the command (the audit log's name without --as)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry: the uid at least
        return f"uid{os.getuid()}"


def _actor(args: argparse.Namespace) -> str:
    """Who the audit log names for this command: --as NAME, else the operating-system user."""
    given: str | None = getattr(args, "as_name", None)
    if given is None:
        return os_user()
    name = given.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise UsageError("--as needs a name of 1-64 printable characters")
    return name


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        emit_json(data)
    else:
        print(text)


# init / serve / tokens ---------------------------------------------------------------------
async def cmd_init(args: argparse.Namespace) -> int:
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

        def transaction(conn: Tx) -> None:
            audit.append(
                conn,
                at=clock.now(),
                actor=_actor(args),
                event="node.initialised",
                subject=config.node_id,
                # open_node checks the country against this: peers pinned it.
                details={
                    "fingerprint": keys.fingerprint,
                    "node_id": config.node_id,
                    "country": config.country,
                },
            )

        await db.run(transaction)
    finally:
        await db.close()
    _print(
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


# Set while a command runs inside the serving process (sent over the control socket).
_SERVING: ContextVar[Node | None] = ContextVar("hotline_serving_node", default=None)


async def with_node(args: argparse.Namespace, work: Callable[[Node], Awaitable[int]]) -> int:
    serving = _SERVING.get()
    if serving is not None:
        return await work(serving)
    async with open_node(DataDir.resolve(args.data_dir), SystemClock()) as node:
        return await work(node)


async def cmd_serve(args: argparse.Namespace) -> int:
    from node import logs

    data_dir = DataDir.resolve(args.data_dir)

    def waiting() -> None:
        print("waiting for commands working on the data directory to finish…", file=sys.stderr)

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

            await node.serve(commands=_runner_for(node), ready=ready)
    return 0


# Commands that never go through a running server: they create or are the server.
LOCAL_COMMANDS = frozenset({"init", "serve"})
# Arguments naming files: made absolute, since the server does not share the caller's directory.
PATH_ARGUMENTS = ("file", "csv", "key_document", "output")


def _runner_for(node: Node) -> CommandRunner:
    """Runs a command line sent over the control socket on the serving node's own services."""

    async def run(argv: list[str], cwd: str) -> int:
        try:
            # As main() does: a key id or fingerprint may begin with '-', whoever sent it.
            args = build_parser().parse_args(_thumbprints_as_values(argv))
        except SystemExit as exc:  # argparse has printed why (to the caller)
            return exc.code if isinstance(exc.code, int) else 2
        if args.command in LOCAL_COMMANDS:
            print(
                f"hotline-node: error: {args.command} cannot run inside a server", file=sys.stderr
            )
            return 2
        for name in PATH_ARGUMENTS:
            value = getattr(args, name, None)
            if value:
                setattr(args, name, str(Path(cwd, value)))
        token = _SERVING.set(node)
        try:
            return await run_args(args)
        finally:
            _SERVING.reset(token)

    return run


async def cmd_tokens_create(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        token = await node.tokens.create(
            args.role, args.name, actor=_actor(args), person=args.for_person
        )
        person = person_key(args.for_person) if args.for_person else None
        name = token_label(args.name, person)
        data = {"token": token, "role": args.role, "name": name, "person": person}
        _print(args, data, token)
        if not args.json:
            print("store it now: it is shown only once", file=sys.stderr)
        return 0

    return await with_node(args, run)


async def cmd_tokens_list(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows = await node.tokens.list_tokens()
        _print(
            args, rows, table(rows, ["id", "role", "name", "person", "created_at", "revoked_at"])
        )
        return 0

    return await with_node(args, run)


async def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        await node.tokens.revoke(args.id, actor=_actor(args))
        _print(args, {"id": args.id, "revoked": True}, f"revoked token {args.id}")
        return 0

    return await with_node(args, run)


# keys --------------------------------------------------------------------------------------
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


async def cmd_keys_show(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows = _key_rows(node)
        data = {
            "node_id": node.config.node_id,
            "country": node.config.country,
            "fingerprint": node.keyring.current.fingerprint,
            "keys": rows,
        }
        _print(
            args,
            data,
            f"node {node.config.node_id} ({node.config.country})\n"
            f"identity fingerprint: {node.keyring.current.fingerprint}\n\n"
            + table(rows, ["purpose", "kid", "state", "not_before", "not_after"]),
        )
        return 0

    return await with_node(args, run)


async def _audit_keys(
    node: Node, event: str, details: dict[str, Any], args: argparse.Namespace
) -> None:
    def transaction(conn: Tx) -> None:
        audit.append(
            conn,
            at=node.clock.now(),
            actor=_actor(args),
            event=event,
            subject=node.config.node_id,
            details=details,
        )

    await node.db.run(transaction)


async def cmd_keys_rotate(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        node.keyring.rotate(node.clock.now())
        await _audit_keys(node, "keys.rotated", {}, args)
        rows = _key_rows(node)
        _print(
            args,
            {"keys": rows},
            "rotated; older keys stay valid for the overlap period\n"
            + table(rows, ["purpose", "kid", "state", "not_after"]),
        )
        return 0

    return await with_node(args, run)


async def cmd_keys_document(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        document = node.key_document()
        if args.output:
            Path(args.output).write_bytes(document + b"\n")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(document.decode("ascii") + "\n")
        return 0

    return await with_node(args, run)


async def cmd_keys_revoke(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        node.keyring.revoke(args.kid, node.clock.now())
        await _audit_keys(node, "keys.revoked", {"kid": args.kid}, args)
        _print(args, {"revoked": args.kid, "keys": _key_rows(node)}, f"revoked {args.kid}")
        return 0

    return await with_node(args, run)


# reports -----------------------------------------------------------------------------------
def _case_text(case: dict[str, Any]) -> str:
    a, h, r = case["assessment"], case["hosting"], case["routing"]
    lines = [
        f"report   {case['id']}  ({case['local_ref']})",
        f"url      {case['url']}",
        f"origin   {case['origin']}   status {case['status']}   tlp {case['tlp']}"
        f"   duplicates {case['duplicates']}",
        f"assessed {a['verdict'] or '-'} / {a['category'] or '-'}"
        + (f"  ({a['legal_basis']})" if a["legal_basis"] else ""),
        *_review_lines(case),
        f"hosting  {h['status']}: countries {', '.join(h['countries']) or '-'}"
        f"   cdn {h['cdn_name'] or ('yes' if h['cdn'] else 'no')}"
        f"   abuse {h['abuse_contact'] or '-'}",
    ]
    if h["addresses"]:
        lines.append(table(h["addresses"], ["ip", "country", "basis", "source", "asn", "cdn"]))
    for error in h["errors"]:
        lines.append(f"  trace note: {error}")
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
            )
        )
    for n, given in enumerate(case.get("submissions", []), 1):
        lines.append(
            f"reported #{n} {given['at']} ({given['source']}, {given['language'] or '-'})"
            f"  contact {given['contact'] or '-'}"
        )
        lines.extend(f"  | {line}" for line in (given["description"] or "-").splitlines())
    lines.append("timeline")
    lines.append(table(case["actions"], ["at", "code", "by", "country", "analyst", "reason"]))
    return "\n".join(lines)


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


async def cmd_reports_submit(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        result = await node.cases.submit(
            args.url, actor=_actor(args), category=args.category, note=args.note, tlp=args.tlp
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
        _print(args, data, text)
        return 0

    return await with_node(args, run)


async def cmd_reports_assess(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        who = await node.reviews.person_named(_actor(args))
        done = await node.reviews.assess(
            args.id,
            verdict=args.verdict,
            category=args.category,
            legal_basis=args.legal_basis,
            actor=who,
            person=who,
        )
        case = await node.cases.show(args.id)
        _print(args, case, _case_text(case))
        if done.pending_review and not args.json:
            print(
                f"this verdict needs a second person: it routes once a reviewer runs"
                f" `hotline-node reports review {args.id} --confirm --review"
                f" {case['review']['id']} --as NAME`",
                file=sys.stderr,
            )
        return 0

    return await with_node(args, run)


async def cmd_reports_action(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        action_id = await node.cases.record_action(
            args.id, code=args.code, reason=args.reason, actor=_actor(args)
        )
        _print(args, {"id": action_id}, f"recorded {args.code} ({action_id})")
        return 0

    return await with_node(args, run)


async def cmd_reports_override(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        await node.cases.override_jurisdiction(
            args.id, country=args.country, reason=args.reason, actor=_actor(args)
        )
        case = await node.cases.show(args.id)
        _print(args, case, _case_text(case))
        return 0

    return await with_node(args, run)


async def cmd_reports_list(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows, cursor = await node.cases.list_page(
            status=args.status, limit=args.limit, after=args.after
        )
        _print(
            args,
            {"reports": rows, "next": cursor},
            table(rows, ["id", "status", "verdict", "category", "received_at", "duplicates", "url"])
            + (f"\nmore: --after '{cursor}'" if cursor else ""),
        )
        return 0

    return await with_node(args, run)


async def cmd_reports_show(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        found = await node.cases.resolve(args.id)
        if len(found) == 1:
            case = await node.cases.show(found[0])
            _print(args, case, _case_text(case))
            return 0
        # A grouped notice's reference: the cases it was about.
        cases = [await node.cases.show(report_id) for report_id in found]
        _print(
            args,
            {"reference": args.id, "reports": cases},
            f"notice {args.id} is about {len(cases)} cases\n\n"
            + "\n\n".join(_case_text(case) for case in cases),
        )
        return 0

    return await with_node(args, run)


async def cmd_reports_review(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        report_id = await node.cases.resolve_one(args.id)
        if args.confirm:
            if args.review is None:
                raise UsageError(
                    "--confirm needs --review ID, the review you read (see reports show)"
                )
            await node.reviews.confirm(report_id, reviewer=_actor(args), review_id=args.review)
        else:
            await node.reviews.reject(
                report_id, reviewer=_actor(args), reason=args.reason, review_id=args.review
            )
        case = await node.cases.show(report_id)
        _print(args, case, _case_text(case))
        return 0

    return await with_node(args, run)


# users -------------------------------------------------------------------------------------
def _secret_text(name: str, secret: Any) -> str:
    lines = [f"password for {name}: {secret.password}"]
    if secret.totp_uri:
        lines.append(f"TOTP secret: {secret.totp_secret}")
        lines.append(f"TOTP URI (for an authenticator app): {secret.totp_uri}")
    return "\n".join(lines)


async def cmd_users_add(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        secret = await node.users.add(args.name, args.role, totp=args.totp, actor=_actor(args))
        _print(
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
            print("give it to them now: it is shown only once", file=sys.stderr)
        return 0

    return await with_node(args, run)


async def cmd_users_list(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows = await node.users.list_users()
        _print(args, rows, table(rows, ["name", "role", "state", "totp", "created_at"]))
        return 0

    return await with_node(args, run)


async def cmd_users_disable(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        await node.users.disable(args.name, actor=_actor(args))
        _print(args, {"name": args.name, "disabled": True}, f"disabled {args.name}")
        return 0

    return await with_node(args, run)


async def cmd_users_reset(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        secret = await node.users.reset(args.name, totp=args.totp, actor=_actor(args))
        _print(
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

    return await with_node(args, run)


IMPORT_BATCH = 500


def _checked_items(args: argparse.Namespace) -> tuple[ImportFile, list[ImportItem]]:
    """Every line checked before anything is written: a file with a bad line imports nothing."""
    file = read_import_file(Path(args.file), IMPORT_FIELDS, encoding=args.encoding, fmt=args.format)
    items: list[ImportItem] = []
    errors = list(file.errors)
    for line, data in file.rows:
        try:
            items.append(ImportItem.check(data))
        except NodeError as exc:
            errors.append((line, str(exc)))
    if errors:
        errors.sort()
        for line, reason in errors[:IMPORT_SHOWN_ERRORS]:
            print(f"{file.path}:{line}: {reason}", file=sys.stderr)
        if len(errors) > IMPORT_SHOWN_ERRORS:
            print(f"… and {len(errors) - IMPORT_SHOWN_ERRORS} more", file=sys.stderr)
        raise UsageError(
            f"{file.path}: {len(errors)} line(s) refused, nothing imported: fix them and run"
            " the import again"
        )
    return file, items


IMPORT_SHOWN_ERRORS = 50


async def cmd_reports_import(args: argparse.Namespace) -> int:
    file, items = _checked_items(args)
    path = file.path

    async def run(node: Node) -> int:
        from node.store import imports

        earlier = await imports.get(node.db, file.digest)
        done = earlier.done if earlier is not None else 0
        summary: dict[str, Any] = {
            "imported": 0,
            "duplicates": 0,
            "errors": 0,
            "already_imported": done,
            "format": file.format,
            "encoding": file.encoding,
            "delimiter": file.delimiter,
        }
        if earlier is not None and done >= len(items):
            _print(
                args,
                summary,
                f"{path.name} was imported already ({done} record(s), {earlier.finished_at}):"
                " nothing to do",
            )
            return 0
        if done:
            print(
                f"{path.name}: an earlier run stopped after {done} of {len(items)} record(s);"
                " taking up from there",
                file=sys.stderr,
            )
        progress = _progress(args.json)
        position = done
        while position < len(items):
            batch = items[position : position + IMPORT_BATCH]
            position += len(batch)
            advance = partial(
                imports.advance,
                digest=file.digest,
                name=path.name,
                items=len(items),
                done=position,
                at=iso(node.clock.now()),
            )
            for result in await node.cases.import_batch(batch, actor=_actor(args), also=advance):
                summary["duplicates"] += result.duplicate
                summary["imported"] += not result.duplicate
            if progress is not None:
                progress(path.name, position, len(items))
        if progress is not None:
            print(file=sys.stderr)
        _print(
            args,
            {**summary, "failed": []},
            f"imported {summary['imported']}, joined existing cases {summary['duplicates']}"
            + (f", {done} already imported by an earlier run" if done else "")
            + f" ({file.format}, {file.encoding}"
            + (f", delimiter {file.delimiter!r}" if file.delimiter else "")
            + ")",
        )
        return 0

    return await with_node(args, run)


async def cmd_reports_withdraw(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        args.id = await node.cases.resolve_one(args.id)
        peers = await node.cases.withdraw(args.id, reason=args.reason, actor=_actor(args))
        if peers:
            await _push_now(node, peers)
        _print(
            args,
            {"id": args.id, "withdrawn": True, "peers": peers},
            f"withdrawn; tombstone queued for {', '.join(peers) or 'no peer'}",
        )
        return 0

    return await with_node(args, run)


async def cmd_reports_clear(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        report_id = await node.cases.resolve_one(args.id)
        waiting = await node.cases.clear_for_host(report_id, reason=args.reason, actor=_actor(args))
        _print(
            args,
            {"id": report_id, "cleared": True, "released": waiting},
            f"cleared by law enforcement: {waiting} held host notice(s) go with the next dispatch"
            if waiting
            else "clearance recorded; no host notice was waiting for it (one queued later"
            " goes without waiting)",
        )
        return 0

    return await with_node(args, run)


# channels ----------------------------------------------------------------------------------
async def cmd_channels_list(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows = await node.dispatcher.describe()
        for warning in await node.dispatcher.warnings():
            print(f"hotline-node: warning: {warning}", file=sys.stderr)
        _print(
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
            ),
        )
        return 0

    return await with_node(args, run)


async def cmd_channels_test(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        outcome = await node.dispatcher.test(args.name, args.to)
        data = {"channel": args.name, "delivered": outcome.delivered, "detail": outcome.detail}
        _print(args, data, f"{'delivered' if outcome.delivered else 'FAILED'}: {outcome.detail}")
        return 0 if outcome.delivered else 1

    return await with_node(args, run)


async def cmd_channels_requeue(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        count = await node.dispatcher.requeue_dead(args.name, _actor(args))
        _print(
            args,
            {"channel": args.name, "requeued": count},
            f"{args.name}: {count} dead message(s) queued again",
        )
        return 0

    return await with_node(args, run)


# peers -------------------------------------------------------------------------------------
PEER_COLUMNS = [
    "node_id",
    "country",
    "status",
    "mode",
    "max_tlp",
    "last_contact_at",
    "delivered",
    "received",
    "endpoint",
]


def _categories(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


async def cmd_peers_add(args: argparse.Namespace) -> int:
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
            actor=_actor(args),
        )
        _print(
            args,
            peer,
            f"added {peer['node_id']} ({peer['country']}): key document "
            f"verified against fingerprint {peer['fingerprint']}",
        )
        return 0

    return await with_node(args, run)


async def cmd_peers_list(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        from node.federation.registry import summary

        rows = [summary(row) for row in await node.registry.all()]
        _print(args, rows, table(rows, PEER_COLUMNS))
        return 0

    return await with_node(args, run)


async def cmd_peers_show(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        peer = await node.registry.describe(args.id)
        text = fields(peer, [k for k in peer if k != "keys"])
        keys = table(peer["keys"], ["purpose", "kid", "not_before", "not_after", "revoked"])
        _print(args, peer, f"{text}\n\nkeys\n{keys}")
        return 0

    return await with_node(args, run)


def _peer_status(status: str) -> Command:
    async def command(args: argparse.Namespace) -> int:
        async def run(node: Node) -> int:
            peer = await node.admin.set_status(args.id, status, _actor(args))
            _print(args, peer, f"{args.id}: {peer['status']}")
            return 0

        return await with_node(args, run)

    return command


async def cmd_peers_requeue(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        count = await node.registry.requeue_dead(args.id, _actor(args))
        _print(
            args,
            {"node_id": args.id, "requeued": count},
            f"{args.id}: {count} rejected record(s) queued again",
        )
        return 0

    return await with_node(args, run)


async def cmd_peers_policy(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        pull = None if args.mode is None else args.mode == "pull"
        peer = await node.admin.set_policy(
            args.id,
            categories=_categories(args.categories),
            max_tlp=args.max_tlp,
            pull_only=pull,
            actor=_actor(args),
        )
        _print(
            args,
            peer,
            f"{args.id}: categories {','.join(peer['categories'])}, max TLP "
            f"{peer['max_tlp']}, mode {peer['mode']}",
        )
        return 0

    return await with_node(args, run)


# sync --------------------------------------------------------------------------------------
def _progress(quiet: bool) -> Callable[[str, int, int], None] | None:
    if quiet or not sys.stderr.isatty():
        return None

    def show(peer: str, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        print(
            f"\r{peer:<20} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


async def _push_now(node: Node, peers: list[str]) -> None:
    for peer in peers:
        await node.delivery.push(peer)


async def cmd_sync(args: argparse.Namespace) -> int:
    async def run(node: Node) -> int:
        rows = await node.registry.all()
        targets = [r for r in rows if args.peer is None or r.node_id == args.peer]
        if args.peer is not None and not targets:
            raise NotFound(f"no peer {args.peer!r}")
        progress = _progress(args.json)
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
                print(file=sys.stderr)
        _print(
            args,
            results,
            table(results, ["peer", "sent", "rejected", "pulled", "skipped", "error"]),
        )
        return 1 if any(r["error"] for r in results) else 0

    return await with_node(args, run)


# stats -------------------------------------------------------------------------------------
async def cmd_stats(args: argparse.Namespace) -> int:
    from node import stats

    period = stats.Period.parse(args.since, args.until)

    async def run(node: Node) -> int:
        document = await stats.collect(node.db, node_id=node.config.node_id, period=period)
        if args.csv:
            stats.write_csv(document, Path(args.csv))
            print(f"wrote {args.csv}", file=sys.stderr)
        _print(args, document, stats.render_text(document))
        return 0

    return await with_node(args, run)


async def cmd_trace(args: argparse.Namespace) -> int:
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
                ),
                *[f"note: {e}" for e in evidence["errors"]],
            ]
        )
        _print(args, evidence, text)
        return 0

    return await with_node(args, run)


async def cmd_audit_verify(args: argparse.Namespace) -> int:
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
            _print(
                args,
                data,
                f"audit log intact: {result.entries} entries verified; head {result.head}\n"
                "(keep the count and head elsewhere: a later run shows any entry removed since)",
            )
            return 0
        _print(args, data, f"audit log BROKEN at entry {result.first_broken}: {result.problem}")
        return 3

    return await with_node(args, run)


# parser ------------------------------------------------------------------------------------
REF_HELP = (
    "the case: its id, its public 8-character reference, a notice's reference or its local_ref"
)
PEER_HELP = "the peer's node id (see peers list)"


def build_parser() -> argparse.ArgumentParser:
    # Both before the command and after it: `hotline-node --data-dir D reports list` and
    # `hotline-node reports list --data-dir D`. SUPPRESS keeps an absent sub-command option from
    # overwriting the value given before the command.
    data_dir_help = "node data directory (default: $HOTLINE_NODE_DATA_DIR or ./hotline-data)"
    json_help = "print one JSON document on stdout (nothing else)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help=data_dir_help)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=json_help)
    common.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="who the audit log names for what this command changes (default: your OS user)",
    )
    parser = argparse.ArgumentParser(
        prog="hotline-node",
        description="Federated exchange node for internet hotlines.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", help=data_dir_help)
    parser.add_argument("--json", action="store_true", help=json_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: Any, name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        p.set_defaults(handler=handler)
        return p

    p = command(sub, "init", cmd_init, "create a node's data directory: config, keys, database")
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
    p = command(
        sub, "serve", cmd_serve, "run the HTTP APIs and scheduled jobs until SIGTERM/SIGINT"
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

    tokens = sub.add_parser("tokens", help="API tokens").add_subparsers(dest="sub", required=True)
    p = command(tokens, "create", cmd_tokens_create, "print a new API token (stored hashed)")
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

    command(
        tokens, "list", cmd_tokens_list, "tokens with role, holder and state (never the secret)"
    )
    p = command(tokens, "revoke", cmd_tokens_revoke, "refuse a token from now on")
    p.add_argument("id", help="the token id (the hex part after hln_, see tokens list)")

    keys = sub.add_parser("keys", help="node keys").add_subparsers(dest="sub", required=True)
    command(keys, "show", cmd_keys_show, "node id, fingerprint, keys with validity")
    command(keys, "rotate", cmd_keys_rotate, "new signing and encryption keys, with overlap")
    p = command(
        keys,
        "document",
        cmd_keys_document,
        "print this node's signed key document (for a peer that cannot reach this node)",
    )
    p.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    p = command(keys, "revoke", cmd_keys_revoke, "revoke one key by its id")
    p.add_argument("kid", help="the key id (see keys show)")

    reports = sub.add_parser("reports", help="cases").add_subparsers(dest="sub", required=True)
    p = command(reports, "submit", cmd_reports_submit, "record a report; prints its id")
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
    p.add_argument("--no-trace", action="store_true", help="leave tracing to the running node")
    p = command(reports, "assess", cmd_reports_assess, "qualify a report; routing follows")
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
    p = command(reports, "action", cmd_reports_action, "record an action on a report")
    p.add_argument("id", help=REF_HELP)
    p.add_argument(
        "--code",
        required=True,
        choices=values(ANALYST_ACTIONS),
        help="what happened",
    )
    p.add_argument("--reason", help="free text kept with the action")
    p = command(
        reports,
        "override",
        cmd_reports_override,
        "set the jurisdiction by hand (with a reason); routing follows",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 code, e.g. DE")
    p.add_argument("--reason", required=True, help="why (kept in the case and the audit log)")
    p = command(reports, "list", cmd_reports_list, "list cases, newest first")
    p.add_argument(
        "--status",
        help=f"only cases in this status: {', '.join(values(CaseStatus))}",
    )
    p.add_argument("--limit", type=int, default=50, help="cases per page, 1-1000 (default 50)")
    p.add_argument(
        "--after", metavar="CURSOR", help="the next page: the cursor the previous page ended with"
    )
    p = command(reports, "show", cmd_reports_show, "one case with its whole timeline")
    p.add_argument("id", help=REF_HELP)
    p = command(
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

    p = command(
        reports,
        "import",
        cmd_reports_import,
        "bulk intake from JSONL or CSV (url, category, verdict, legal_basis, hosting_country,"
        " note, tlp)",
    )
    p.add_argument("file", help="the file; CSV (comma, semicolon or tab) or JSON lines")
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="csv or jsonl (default: chosen by content, not by the file name)",
    )
    p.add_argument(
        "--encoding",
        help="the file's text encoding, e.g. cp1252 or latin-1 (default: UTF-8, or UTF-16 and"
        " UTF-8 by their byte-order mark)",
    )
    p = command(
        reports,
        "withdraw",
        cmd_reports_withdraw,
        "retract our report; peers that received it close it",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--reason", required=True, help="why (sent to the peers that hold it)")

    p = command(
        reports,
        "clear",
        cmd_reports_clear,
        "law enforcement cleared the case: release a host notice held for them",
    )
    p.add_argument("id", help=REF_HELP)
    p.add_argument("--reason", help="e.g. who cleared it and how")

    users = sub.add_parser("users", help="people who use the console").add_subparsers(
        dest="sub", required=True
    )
    p = command(users, "add", cmd_users_add, "a new person; prints their first password once")
    p.add_argument("name", help="lower-case login name, e.g. alice")
    p.add_argument(
        "--role",
        required=True,
        choices=values(UserRole),
        help="analyst: cases; reviewer: also confirms verdicts under four-eyes; operator: the node",
    )
    p.add_argument("--totp", action="store_true", help="also a second factor (TOTP)")
    command(users, "list", cmd_users_list, "people with role and state (never a secret)")
    p = command(users, "disable", cmd_users_disable, "refuse a person from now on; signs them out")
    p.add_argument("name", help="the person's login name (see users list)")
    p = command(
        users, "reset", cmd_users_reset, "a new password (and TOTP secret); enables and signs out"
    )
    p.add_argument("name", help="the person's login name (see users list)")
    p.add_argument("--totp", action="store_true", help="add a second factor if there is none")

    channels = sub.add_parser("channels", help="national channels").add_subparsers(
        dest="sub", required=True
    )
    command(channels, "list", cmd_channels_list, "configured channels with their counters")
    p = command(channels, "test", cmd_channels_test, "send a marked test message through one")
    p.add_argument("name", help="the channel's name in node.toml (see channels list)")
    p.add_argument("--to", help="recipient for a channel that mails each case's abuse contact")
    p = command(
        channels,
        "requeue",
        cmd_channels_requeue,
        "send again the messages a channel gave up on (after fixing the cause)",
    )
    p.add_argument("name", help="the channel's name in node.toml (see channels list)")

    peers = sub.add_parser("peers", help="peer hotlines").add_subparsers(dest="sub", required=True)
    p = command(
        peers,
        "add",
        cmd_peers_add,
        "fetch a peer's key document, check it against the fingerprint, pin it",
    )
    p.add_argument("--node-id", required=True, help="the peer's node id, e.g. de-eco")
    p.add_argument("--country", required=True, help="the peer's ISO 3166-1 alpha-2 country")
    p.add_argument(
        "--endpoint", required=True, help="the peer's URL, e.g. https://node.eco.example"
    )
    p.add_argument(
        "--fingerprint",
        required=True,
        help="identity fingerprint the peer's operator gave you out of band",
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
    command(peers, "list", cmd_peers_list, "all peers with status and counters")
    p = command(peers, "show", cmd_peers_show, "one peer: keys, queue depth, backoff, errors")
    p.add_argument("id", help=PEER_HELP)
    for name, status, text in (
        ("suspend", "suspended", "stop exchanging with a peer"),
        ("resume", "active", "exchange with a suspended peer again"),
        ("remove", "removed", "forget a peer (history is kept)"),
    ):
        p = command(peers, name, _peer_status(status), text)
        p.add_argument("id", help=PEER_HELP)
    p = command(
        peers,
        "requeue",
        cmd_peers_requeue,
        "queue again the records a peer rejected (after fixing the cause)",
    )
    p.add_argument("id", help=PEER_HELP)
    p = command(peers, "policy", cmd_peers_policy, "what a peer may receive")
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
    p = command(sub, "sync", cmd_sync, "run one round of delivery (and pull) now")
    p.add_argument("--peer", help="only this peer")

    p = command(
        sub,
        "stats",
        cmd_stats,
        "counts by category, country, status and peer; time to removal and to forwarding",
    )
    p.add_argument("--since", help="reports received from this day (YYYY-MM-DD) or time on")
    p.add_argument("--until", help="reports received up to this day (inclusive) or time")
    p.add_argument("--csv", metavar="FILE", help="also write the figures to FILE as CSV")

    p = command(sub, "trace", cmd_trace, "jurisdiction evidence for a URL (never contacts it)")
    p.add_argument("url", help="the URL whose host is traced (DNS, IP data and RDAP only)")
    audit_cmds = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True)
    command(audit_cmds, "verify", cmd_audit_verify, "check the audit hash chain end to end")
    return parser


# A key id or fingerprint is a base64url thumbprint: one in 64 begins with "-", which argparse
# takes for an option. Such a value is given to --fingerprint with "=", or moved after "--".
_DASHED_THUMBPRINT = re.compile(r"^\s*-[A-Za-z0-9_-]{42}\s*$")
_THUMBPRINT_OPTIONS = ("--fingerprint",)


def _thumbprints_as_values(argv: list[str]) -> list[str]:
    if "--" in argv:
        return argv
    out: list[str] = []
    positional: list[str] = []
    for arg in argv:
        if not _DASHED_THUMBPRINT.match(arg):
            out.append(arg)
        elif out and out[-1] in _THUMBPRINT_OPTIONS:
            out[-1] = f"{out[-1]}={arg}"
        else:
            positional.append(arg)
    return out + (["--", *positional] if positional else [])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _thumbprints_as_values(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if getattr(args, "needs_as", False) and args.as_name is None:
        # Checked before a server is asked, which would otherwise be given the OS user.
        print(
            f"hotline-node: error: {args.command} {args.sub} needs --as NAME, the reviewer"
            " deciding (an active reviewer, see users list)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_dispatch(args, argv))
    except BrokenPipeError:
        # `reports list | head`: the reader has gone, which is no error of ours. Point stdout
        # at /dev/null so that the flush at exit cannot fail again, and end quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a program killed by the signal would end
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the command here, or in the server that holds the data directory when one runs."""
    if args.command in LOCAL_COMMANDS:
        return await run_args(args)
    data_dir = DataDir.resolve(args.data_dir)
    for _ in range(3):  # a server stopping while we look: look again
        with locks.working_directly(data_dir) as direct:
            if direct:
                return await run_args(args)
        if await control.wait_for_socket(data_dir, lambda: locks.server_running(data_dir)):
            try:
                # The server runs as the node's user: the caller's own name travels with the
                # command, so that the audit log names the person, not the service account.
                sent = argv if args.as_name is not None else [*argv, "--as", os_user()]
                return await control.send(data_dir, sent)
            except control.ServerGone:
                continue
    print(
        f"hotline-node: error: {data_dir.root} is held by a server that does not answer",
        file=sys.stderr,
    )
    return 1


async def run_args(args: argparse.Namespace) -> int:
    """Run a parsed command; user errors become one line on stderr and a status."""
    try:
        handler: Command = args.handler
        return await handler(args)
    except (NodeError, KeysError, JurisdictionError, UsageError) as exc:
        print(f"hotline-node: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # not an error to report: main() ends quietly
    except sqlite3.Error as exc:
        # Rolled back; the operator sees SQLite's reason in one line (the HTTP API hides it).
        print(f"hotline-node: error: database: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A port in use, a path that cannot be written: the system's own words, one line.
        print(
            f"hotline-node: error: {exc.strerror or exc}"
            + (f": {exc.filename}" if exc.filename else ""),
            file=sys.stderr,
        )
        return 1
