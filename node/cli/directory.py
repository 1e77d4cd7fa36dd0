"""The signed member directory on the command line.

The umbrella body's tools, made and signed k-of-n with no node: `hotline-node directory
init|add|remove|renew|sign|publish|rotate|sign-root|publish-root|show DIR`. DIR is the
umbrella's folder (node/umbrella.py says what it holds); the formats are protocol.md §14. Each
runs here, in the caller's process (main.LOCAL_COMMANDS).

A node's commands, run on the node (through its control socket when it serves, as `peers …`):
`directory trust ROOT_FILE --source FILE_OR_URL [--auto-peer]`, `directory refresh`,
`directory status` (node/federation/directory.py).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.app import Node
from node.cli.base import Context, Declare, UsageError
from node.clock import SystemClock, iso
from node.federation.directory_source import is_url
from node.output import table
from node.umbrella import ROOT_FILE, Pending, UmbrellaDir, digest, load_signer, member_of
from protocol.directory import Root, counted_signers

# The commands of this group that run in the caller's process: all of these need no node.
LOCAL = frozenset(
    {
        "init",
        "add",
        "remove",
        "renew",
        "sign",
        "publish",
        "rotate",
        "sign-root",
        "publish-root",
        "show",
    }
)
DIR_HELP = "the directory folder (made by directory init; 0700)"


def _folder(args: argparse.Namespace) -> UmbrellaDir:
    return UmbrellaDir(Path(args.dir))


def _time(seconds: int | None) -> str | None:
    return None if seconds is None else iso(datetime.fromtimestamp(seconds, UTC))


def _pending_line(pending: Pending, root: Root) -> str:
    counted = (
        counted_signers(pending.document(root.name), pending.signatures, root.keys)
        if pending.issued_at is not None
        else frozenset()
    )
    missing = max(root.threshold - len(counted), 0)
    state = "ready to publish" if missing == 0 else f"{missing} more needed before publish"
    return (
        f"pending list version {pending.version}: {len(pending.members)} member(s),"
        f" {len(counted)} of {root.threshold} signature(s) ({state})"
    )


async def cmd_init(args: argparse.Namespace, ctx: Context) -> int:
    folder, root, files = UmbrellaDir.create(
        Path(args.dir), name=args.name, signers=args.signers, threshold=args.threshold
    )
    kids = list(root.keys)
    data = {
        "dir": str(folder.path),
        "name": root.name,
        "root_version": root.version,
        "threshold": root.threshold,
        "root_digest": digest(root.wire),
        "signers": [{"kid": kid, "file": str(path)} for kid, path in zip(kids, files, strict=True)],
    }
    lines = [
        f"directory {root.name}: root version 1, {root.threshold} of {len(kids)} signatures"
        f" needed, in {folder.path}",
        f"root digest (compare it out of band when you hand {ROOT_FILE} to a hotline):"
        f" {data['root_digest']}",
        *(f"  {path}  {kid}" for kid, path in zip(kids, files, strict=True)),
        "each signer keeps their signer-N.key offline; a list is signed with"
        f" directory sign {folder.path} --key FILE",
    ]
    ctx.show(args, data, "\n".join(lines))
    return 0


def _categories(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


async def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    member = member_of(
        node_id=args.node_id,
        country=args.country,
        endpoint=args.endpoint,
        fingerprint=args.fingerprint,
        categories=_categories(args.categories),
        suites=_categories(args.suites),
    )
    with folder.locked():
        pending, previous = folder.add(member, replace=args.replace)
        root = folder.root()
    verb = "replaced" if previous is not None else "added"
    data = {"action": verb, "member": member.to_json(), "pending_version": pending.version}
    ctx.show(args, data, f"{verb} {member.node_id}\n{_pending_line(pending, root)}")
    return 0


async def cmd_remove(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    with folder.locked():
        pending = folder.remove(args.node_id)
        root = folder.root()
    data = {"action": "removed", "node_id": args.node_id, "pending_version": pending.version}
    ctx.show(args, data, f"removed {args.node_id}\n{_pending_line(pending, root)}")
    return 0


async def cmd_renew(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    with folder.locked():
        pending = folder.renew()
        root = folder.root()
    data = {"pending_version": pending.version, "members": len(pending.members)}
    ctx.show(args, data, _pending_line(pending, root))
    return 0


async def cmd_sign(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    key = load_signer(Path(args.key))
    with folder.locked():
        pending, root, counted = folder.sign_list(
            key, days=args.valid_days, now=SystemClock().now()
        )
    data = {
        "version": pending.version,
        "issued_at": _time(pending.issued_at),
        "expires": _time(pending.expires),
        "signatures": len(counted),
        "threshold": root.threshold,
    }
    ctx.show(
        args,
        data,
        f"signed; valid {_time(pending.issued_at)} to {_time(pending.expires)}\n"
        + _pending_line(pending, root),
    )
    return 0


async def cmd_publish(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    with folder.locked():
        pending, _root, wire = folder.publish_list(
            Path(args.output), days=args.valid_days, now=SystemClock().now()
        )
    data = {
        "output": args.output,
        "version": pending.version,
        "members": len(pending.members),
        "expires": _time(pending.expires),
        "bytes": len(wire),
    }
    ctx.show(
        args,
        data,
        f"published list version {pending.version} ({len(pending.members)} member(s), valid"
        f" until {_time(pending.expires)}) to {args.output}",
    )
    return 0


async def cmd_rotate(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    with folder.locked():
        document, files = folder.rotate(signers=args.signers, threshold=args.threshold)
        root = folder.root()
    kids = [entry["kid"] for entry in document["keys"]]
    data = {
        "version": document["version"],
        "threshold": document["threshold"],
        "signers": [{"kid": kid, "file": str(path)} for kid, path in zip(kids, files, strict=True)],
        "old_needed": root.threshold,
    }
    lines = [
        f"root version {document['version']} prepared ({document['threshold']} of {len(kids)}),"
        " signed by its new keys:",
        *(f"  {path}  {kid}" for kid, path in zip(kids, files, strict=True)),
        f"now {root.threshold} signer(s) of root version {root.version} sign it (directory"
        f" sign-root {folder.path} --key OLD_SIGNER_KEY), then directory publish-root"
        f" {folder.path} --output FILE",
    ]
    ctx.show(args, data, "\n".join(lines))
    return 0


async def cmd_sign_root(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    key = load_signer(Path(args.key))
    with folder.locked():
        folder.sign_rotation(key)
        counts = folder.rotation_counts()
    assert counts is not None  # sign_rotation refuses when there is no rotation
    ctx.show(
        args,
        counts,
        f"signed root version {counts['version']}: {counts['old_signatures']} of"
        f" {counts['old_needed']} old signer(s), {counts['new_signatures']} of"
        f" {counts['new_needed']} new signer(s)",
    )
    return 0


async def cmd_publish_root(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    with folder.locked():
        old, new, retired = folder.publish_rotation(Path(args.output))
    data = {
        "output": args.output,
        "version": new.version,
        "threshold": new.threshold,
        "root_digest": digest(new.wire),
        "retired_signer_files": [str(path) for path in retired],
    }
    lines = [
        f"root version {new.version} in force ({new.threshold} of {len(new.keys)}), written to"
        f" {args.output}; publish it next to the list: nodes holding version {old.version}"
        " verify it against that version",
        "the pending list's signatures were dropped: sign it with the new keys and publish it",
    ]
    if retired:
        lines.append(
            "old signer keys no longer sign; destroy them: "
            + ", ".join(str(path) for path in retired)
        )
    ctx.show(args, data, "\n".join(lines))
    return 0


def _show_data(folder: UmbrellaDir) -> dict[str, Any]:
    root = folder.root()
    pending = folder.pending()
    files = folder.signer_files()
    document = pending.document(root.name) if pending.issued_at is not None else None
    counted = counted_signers(document, pending.signatures, root.keys) if document else frozenset()
    published = folder.published()
    return {
        "dir": str(folder.path),
        "root": {
            "name": root.name,
            "version": root.version,
            "threshold": root.threshold,
            "digest": digest(root.wire),
            "keys": [
                {"kid": kid, "file": str(files[kid]) if kid in files else None} for kid in root.keys
            ],
        },
        "pending": {
            "version": pending.version,
            "issued_at": _time(pending.issued_at),
            "expires": _time(pending.expires),
            "members": [m.to_json() for m in pending.members],
            "signatures": [
                {
                    "kid": s.kid,
                    "file": str(files[s.kid]) if s.kid in files else None,
                    "counts": s.kid in counted,
                }
                for s in pending.signatures
            ],
            "signatures_counted": len(counted),
            "signatures_needed": root.threshold,
        },
        "published": None
        if published is None
        else {
            "version": published["version"],
            "issued_at": _time(published["issued_at"]),
            "expires": _time(published["expires"]),
            "members": len(published["members"]),
        },
        "rotation": folder.rotation_counts(),
    }


def _show_text(data: dict[str, Any], colour: bool) -> str:
    root, pending = data["root"], data["pending"]
    lines = [
        f"directory {root['name']}: root version {root['version']},"
        f" {root['threshold']} of {len(root['keys'])} signatures needed",
        f"root digest: {root['digest']}",
        table(root["keys"], ["kid", "file"], colour),
        "",
        f"pending list version {pending['version']}: {len(pending['members'])} member(s),"
        f" {pending['signatures_counted']} of {pending['signatures_needed']} signature(s)"
        + (
            f", valid {pending['issued_at']} to {pending['expires']}"
            if pending["issued_at"]
            else ""
        ),
        table(pending["members"], ["node_id", "country", "endpoint", "fingerprint"], colour),
    ]
    if pending["signatures"]:
        lines += ["signatures", table(pending["signatures"], ["kid", "file", "counts"], colour)]
    published = data["published"]
    lines.append(
        "\nnothing published yet"
        if published is None
        else f"\npublished: list version {published['version']} ({published['members']}"
        f" member(s)), valid until {published['expires']}"
    )
    rotation = data["rotation"]
    if rotation is not None:
        lines.append(
            f"rotation under way to root version {rotation['version']}:"
            f" {rotation['old_signatures']} of {rotation['old_needed']} old signer(s),"
            f" {rotation['new_signatures']} of {rotation['new_needed']} new signer(s)"
        )
    return "\n".join(lines)


async def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    folder = _folder(args)
    folder.check()
    data = _show_data(folder)
    ctx.show(args, data, _show_text(data, ctx.colour))
    return 0


def _outcome_lines(outcome: dict[str, Any]) -> list[str]:
    lines = [f"  rotated to root version {v}" for v in outcome["rotated_to"]]
    state = outcome["state"]
    version = outcome["version"]
    lines.append(
        f"member list version {version} accepted"
        if state == "accepted"
        else f"member list version {version} unchanged"
    )
    lines += [f"  {line}" for line in outcome["changes"]]
    if outcome["proposals"]:
        lines.append(
            "  proposals (peers add --from-directory ID): " + ", ".join(outcome["proposals"])
        )
    lines += [f"  {node_id}: {note}" for node_id, note in sorted(outcome["notes"].items())]
    return lines


async def cmd_trust(args: argparse.Namespace, ctx: Context) -> int:
    path = Path(args.root_file)
    try:
        wire = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc
    # A path means the caller's working directory (made absolute before it reaches a server).
    source = args.source if is_url(args.source) else str(Path(args.source).absolute())

    async def run(node: Node) -> int:
        data = await node.directory.trust(
            wire, source, auto_peer=args.auto_peer, actor=ctx.actor(args)
        )
        lines = [
            f"trusting directory {data['name']}: root version {data['root_version']},"
            f" {data['threshold']} of {data['signers']} signatures, lists from {data['source']}"
            + (" (members become peers)" if data["auto_peer"] else ""),
            f"root digest: {data['root_digest']} (compare it with the one the umbrella body"
            " gave you out of band)",
        ]
        if data["refresh"] is not None:
            lines += _outcome_lines(data["refresh"])
        ctx.show(args, data, "\n".join(lines))
        if data["refresh"] is None:
            ctx.note(f"hotline-node: error: {data['refresh_error']}")
            return 1
        return 0

    return await ctx.with_node(args, run)


async def cmd_refresh(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        outcome = (await node.directory.refresh(ctx.actor(args))).to_json()
        ctx.show(args, outcome, "\n".join(_outcome_lines(outcome)))
        return 0

    return await ctx.with_node(args, run)


def _status_text(data: dict[str, Any], colour: bool) -> str:
    if not data["trusted"]:
        return "no member directory trusted (directory trust ROOT_FILE --source FILE_OR_URL)"
    root = data["root"]
    lines = [
        f"directory {data['name']}: root version {root['version']} ({root['threshold']} of"
        f" {root['signers']}), digest {root['digest']}",
        f"source: {data['source']}" + (" (auto-peer)" if data["auto_peer"] else ""),
    ]
    if data["version"] is None:
        lines.append("no member list accepted yet")
    else:
        state = (
            "EXPIRED (still used for the peers pinned through it)" if data["expired"] else "valid"
        )
        lines.append(
            f"member list version {data['version']}: {len(data['members'])} member(s),"
            f" {state} until {data['valid_until']}"
        )
    refresh = data["last_refresh"]
    if refresh["at"] is not None:
        lines.append(
            f"last refresh {refresh['at']}: "
            + (
                f"refused ({refresh['refusal']}): {refresh['error']}"
                if refresh["refusal"]
                else (f"failed: {refresh['error']}" if refresh["error"] else "ok")
            )
        )
    if data["members"]:
        lines.append(
            table(
                data["members"],
                ["node_id", "country", "state", "peer_status", "pinned_by", "endpoint", "note"],
                colour,
            )
        )
    if data["left"]:
        lines.append("suspended, left the directory: " + ", ".join(data["left"]))
    return "\n".join(lines)


async def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    async def run(node: Node) -> int:
        data = await node.directory.status()
        ctx.show(args, data, _status_text(data, ctx.colour))
        return 0

    return await ctx.with_node(args, run)


def register(cli: Declare) -> None:
    group = cli.group(
        "directory",
        "the signed member directory: the umbrella body's tools (run here, need no node),"
        " and a node's trust, refresh and status",
    )
    p = cli.command(
        group,
        "trust",
        cmd_trust,
        "trust a directory's root (compare its digest out of band) and fetch its member list",
    )
    p.add_argument("root_file", metavar="ROOT_FILE", help="the root.json the umbrella gave you")
    p.add_argument(
        "--source",
        required=True,
        metavar="FILE_OR_URL",
        help="where the member list is published (its root-N.json files next to it)",
    )
    p.add_argument(
        "--auto-peer",
        action="store_true",
        help="every member becomes a peer, pinned to the fingerprint the list gives",
    )
    cli.command(group, "refresh", cmd_refresh, "fetch the member list now, and apply it")
    cli.command(
        group,
        "status",
        cmd_status,
        "the list held: version, valid until, members (peer or proposal), the last refresh",
    )
    p = cli.command(
        group,
        "init",
        cmd_init,
        "a new directory folder: N signer keys, a root needing K of them, an empty list",
    )
    p.add_argument("dir", metavar="DIR", help="the folder to create (new or empty)")
    p.add_argument("--name", required=True, help="the directory's name, e.g. inhope")
    p.add_argument("--signers", type=int, required=True, help="how many signer keys (N)")
    p.add_argument(
        "--threshold", type=int, required=True, help="how many signatures a list needs (K)"
    )

    p = cli.command(
        group,
        "add",
        cmd_add,
        "add a member to the pending list (its signatures are dropped: the list changed)",
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--node-id", required=True, help="the member's node id")
    p.add_argument("--country", required=True, help="its ISO 3166-1 alpha-2 country")
    p.add_argument("--endpoint", required=True, help="its federation URL")
    p.add_argument(
        "--fingerprint",
        required=True,
        help="its identity fingerprint, as its operator gave it (hotline-node keys show)",
    )
    p.add_argument("--categories", help="comma-separated categories it accepts (default: unsaid)")
    p.add_argument("--suites", help="comma-separated envelope suites it offers (default: unsaid)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="change an existing member's entry (new endpoint, identity key replaced)",
    )

    p = cli.command(group, "remove", cmd_remove, "remove a member from the pending list")
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--node-id", required=True, help="the member's node id")

    p = cli.command(
        group,
        "renew",
        cmd_renew,
        "start the next list version with the same members (fresh validity, signed again)",
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)

    p = cli.command(group, "sign", cmd_sign, "add one signer's signature to the pending list")
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--key", required=True, metavar="SIGNER_KEY", help="a signer-N.key file")
    p.add_argument(
        "--valid-days",
        type=int,
        help="days the list is valid (default 7); fixed by the first signature",
    )

    p = cli.command(
        group,
        "publish",
        cmd_publish,
        "write the signed list to FILE once K signers have signed it",
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--output", required=True, metavar="FILE", help="where to write the list")
    p.add_argument(
        "--valid-days",
        type=int,
        help="check that the signatures cover this many days of validity",
    )

    p = cli.command(
        group,
        "rotate",
        cmd_rotate,
        "prepare a new root of N new signer keys needing K (the old signers sign it next)",
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--signers", type=int, required=True, help="how many new signer keys (N)")
    p.add_argument(
        "--threshold", type=int, required=True, help="how many signatures the new root needs (K)"
    )

    p = cli.command(group, "sign-root", cmd_sign_root, "add one signer's signature to the new root")
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument(
        "--key", required=True, metavar="SIGNER_KEY", help="a signer-N.key file, old or new"
    )

    p = cli.command(
        group,
        "publish-root",
        cmd_publish_root,
        "put the new root in force once K old and K new signers have signed it",
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
    p.add_argument("--output", required=True, metavar="FILE", help="where to write the new root")

    p = cli.command(
        group, "show", cmd_show, "the root, the pending list and its signatures, the last list"
    )
    p.add_argument("dir", metavar="DIR", help=DIR_HELP)
