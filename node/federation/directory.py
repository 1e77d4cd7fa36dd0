"""A node that trusts a member directory (protocol.md §14.6): the root its operator gave it, the
lists it fetches and verifies, and what an accepted list changes on its peers.

- `trust` verifies a root file and remembers it with where lists come from; its digest is for
  the operator to compare with the umbrella's, out of band. Then it refreshes.
- `refresh` catches up rotations (`root-<held+1>.json` next to the list, one version at a
  time), fetches the list, and verifies it. A refused list changes nothing: the list held stays
  in force, and the refusal is recorded, logged (one line) and audited. An accepted list is
  kept and applied.
- Applying a list: a member not yet a peer becomes one with `auto_peer` (pinned to the list's
  fingerprint), else it is a proposal (`peers add --from-directory ID`); a peer pinned through
  the directory follows its member's fingerprint and endpoint, is suspended when it is no
  longer listed ("left the directory"), and is resumed when it is listed again. A member list
  is the only thing that replaces a pin; an operator's own peers are adopted only when the list
  gives the fingerprint they already have.

No HTTP here: documents are read through a DirectorySource.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keys.document import to_unix
from node.clock import Clock, iso
from node.errors import (
    N_,
    Conflict,
    DirectoryRefused,
    InvalidInput,
    NodeError,
    NotFound,
    UpstreamError,
)
from node.federation.admin import PeerAdmin
from node.federation.directory_source import DirectorySource, beside, check_source
from node.federation.registry import PeerRegistry
from node.store import audit
from node.store import directory as directory_store
from node.store.db import Database, Tx
from node.store.directory import DirectoryRow, HeldList
from node.store.peers import PeerRow
from node.umbrella import digest
from peers.model import PeerStatus
from protocol.directory import (
    MAX_LIST_BYTES,
    MAX_ROOT_BYTES,
    DirectoryError,
    DirectoryList,
    Member,
    Root,
    verify_list,
    verify_list_signatures,
    verify_root,
    verify_rotation,
)
from protocol.records import Category

log = logging.getLogger("hotline.directory")
LEFT = "left the directory"
NOT_TRUSTED = N_(
    "no member directory is trusted here: run directory trust ROOT_FILE --source FILE_OR_URL"
)


@dataclass
class RefreshOutcome:
    """What a refresh did: `state` is accepted, unchanged, or refused (raised as an error)."""

    state: str
    version: int | None
    rotated_to: list[int] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)  # one line each, for people and the log
    proposals: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "version": self.version,
            "rotated_to": self.rotated_to,
            "changes": self.changes,
            "proposals": self.proposals,
            "notes": self.notes,
        }


def _time(seconds: int | None) -> str | None:
    return None if seconds is None else iso(datetime.fromtimestamp(seconds, UTC))


def _categories(member: Member) -> list[str] | None:
    """What a member says it accepts, among the categories this node knows (a name it does not
    know is ignored, protocol.md §14.3); None when it says nothing we know: the default."""
    known = {c.value for c in Category}
    named = [name for name in member.categories or () if name in known]
    return named or None


class DirectoryService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        registry: PeerRegistry,
        admin: PeerAdmin,
        source: DirectorySource,
    ) -> None:
        self.db = db
        self.clock = clock
        self.node_id = node_id
        self.registry = registry
        self.admin = admin
        self.source = source
        # One refresh at a time: the scheduler's and an operator's would apply a list twice.
        self._lock = asyncio.Lock()

    # trusting a root ------------------------------------------------------------------------
    async def trust(
        self, root_wire: bytes, source: str, *, auto_peer: bool, actor: str
    ) -> dict[str, Any]:
        """Trust the root in `root_wire` (the operator's decision, out of band), with lists
        from `source`; then refresh. Returns the root's digest, to compare with the umbrella's,
        and what the first refresh did (or why it failed: the root is trusted all the same)."""
        try:
            root = verify_root(root_wire.strip())
        except DirectoryError as exc:
            raise DirectoryRefused(
                N_("directory root refused ({refusal}): {reason}"),
                exc.refusal.value,
                refusal=exc.refusal.value,
                reason=exc.reason,
            ) from exc
        source = check_source(source)
        now = self.clock.now()
        async with self._lock:
            before = await directory_store.get(self.db)
            keep = before is not None and before.name == root.name and before.list is not None
            if keep and before is not None and before.list is not None:
                try:
                    verify_list_signatures(before.list, root)
                except DirectoryError:
                    keep = False  # the held list was signed by keys this root does not name

            def trust_txn(conn: Tx) -> None:
                directory_store.trust_txn(
                    conn,
                    name=root.name,
                    root_version=root.version,
                    root=root.wire,
                    source=source,
                    auto_peer=auto_peer,
                    at=iso(now),
                    actor=actor,
                    keep_list=keep,
                )
                audit.append(
                    conn,
                    at=now,
                    actor=actor,
                    event="directory.trusted",
                    subject=root.name,
                    details={
                        **_root_details(root),
                        "source": source,
                        "auto_peer": auto_peer,
                    },
                )

            await self.db.run(trust_txn)
            result: dict[str, Any] = {
                "name": root.name,
                "root_version": root.version,
                "root_digest": digest(root.wire),
                "threshold": root.threshold,
                "signers": len(root.keys),
                "source": source,
                "auto_peer": auto_peer,
            }
            try:
                result["refresh"] = (await self._refresh(actor)).to_json()
            except NodeError as exc:
                result["refresh"] = None
                result["refresh_error"] = str(exc)
            return result

    # refreshing -----------------------------------------------------------------------------
    async def refresh(self, actor: str) -> RefreshOutcome:
        """Fetch and verify the list (after any newer roots); apply it when accepted.

        Raises NotFound when no directory is trusted, UpstreamError when a document cannot be
        fetched, DirectoryRefused when a root or the list does not verify: in every case the
        list held stays in force, and the failure is recorded for `status`."""
        async with self._lock:
            return await self._refresh(actor)

    async def refresh_if_trusted(self, actor: str) -> RefreshOutcome | None:
        """The scheduled refresh: nothing when no directory is trusted; a failure is logged and
        recorded by `refresh`, and does not stop the scheduler."""
        if await directory_store.get(self.db) is None:
            return None
        try:
            return await self.refresh(actor)
        except NodeError:
            return None  # said and recorded by _refresh
        finally:
            await self.warn_if_expired()

    async def _refresh(self, actor: str) -> RefreshOutcome:
        row = await directory_store.get(self.db)
        if row is None:
            raise NotFound(NOT_TRUSTED)
        try:
            root, rotated = await self._catch_up(row, actor)
            wire = await self.source.fetch(row.source, MAX_LIST_BYTES)
            if wire is None:
                raise UpstreamError(N_("no member list at {source}"), source=row.source)
        except UpstreamError as exc:
            await self._record(str(exc), None)
            log.warning("directory refresh failed: %s", exc)
            raise
        now = self.clock.now()
        if row.list is not None and wire == row.list:
            # The list held, fetched again: nothing to verify. Applying it again is how members
            # that could not be reached last time become peers now.
            held = _held_list(row)
            outcome = RefreshOutcome("unchanged", held.version, rotated)
            await self._record(None, None)
            if not held.is_expired(now):
                await self._apply(held, row, actor, outcome)
            return outcome
        try:
            accepted = verify_list(wire, root, now=now, held_version=row.list_version)
        except DirectoryError as exc:
            await self._refused(exc, "list", row, actor)
            raise DirectoryRefused(
                N_("member list refused ({refusal}): {reason}; {kept}"),
                exc.refusal.value,
                refusal=exc.refusal.value,
                reason=exc.reason,
                kept=_kept(row),
            ) from exc
        await self._accept(accepted, root, row, actor)
        outcome = RefreshOutcome("accepted", accepted.version, rotated)
        await self._apply(accepted, row, actor, outcome)
        log.info(
            "member list version %d accepted (%d members)%s",
            accepted.version,
            len(accepted.members),
            "".join(f"; {line}" for line in outcome.changes),
        )
        return outcome

    async def _catch_up(self, row: DirectoryRow, actor: str) -> tuple[Root, list[int]]:
        """Verify each newer root published next to the list, one version at a time."""
        root = verify_root(row.root)
        rotated: list[int] = []
        while True:
            location = beside(row.source, f"root-{root.version + 1}.json")
            wire = await self.source.fetch(location, MAX_ROOT_BYTES)
            if wire is None:
                return root, rotated
            try:
                root = verify_rotation(root, wire)
            except DirectoryError as exc:
                await self._refused(exc, "root", row, actor, version=root.version + 1)
                raise DirectoryRefused(
                    N_("directory root version {version} refused ({refusal}): {reason}; {kept}"),
                    exc.refusal.value,
                    version=root.version + 1,
                    refusal=exc.refusal.value,
                    reason=exc.reason,
                    kept=_kept(row),
                ) from exc
            await self._rotated(root, actor)
            rotated.append(root.version)

    async def _rotated(self, root: Root, actor: str) -> None:
        now = self.clock.now()

        def rotated_txn(conn: Tx) -> None:
            directory_store.rotate_txn(conn, version=root.version, root=root.wire, at=iso(now))
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="directory.root_rotated",
                subject=root.name,
                details=_root_details(root),
            )

        await self.db.run(rotated_txn)
        log.warning(
            "directory %s: root version %d in force (%d of %d signers)",
            root.name,
            root.version,
            root.threshold,
            len(root.keys),
        )

    async def _record(self, error: str | None, refusal: str | None) -> None:
        at = iso(self.clock.now())
        await self.db.run(
            lambda conn: directory_store.refreshed_txn(conn, at=at, error=error, refusal=refusal)
        )

    async def _refused(
        self,
        exc: DirectoryError,
        kind: str,
        row: DirectoryRow,
        actor: str,
        *,
        version: int | None = None,
    ) -> None:
        now = self.clock.now()

        def refused_txn(conn: Tx) -> None:
            directory_store.refreshed_txn(
                conn, at=iso(now), error=exc.reason, refusal=exc.refusal.value
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="directory.refused",
                subject=row.name,
                details={
                    "document": kind,
                    "refusal": exc.refusal.value,
                    "reason": exc.reason[:500],
                    **({"root_version": version} if version is not None else {}),
                    "held_version": row.list_version,
                },
            )

        await self.db.run(refused_txn)
        log.warning(
            "directory %s: %s refused (%s): %s; %s",
            row.name,
            "member list" if kind == "list" else f"root version {version}",
            exc.refusal.value,
            exc.reason,
            _kept(row),
        )

    async def _accept(
        self, accepted: DirectoryList, root: Root, row: DirectoryRow, actor: str
    ) -> None:
        now = self.clock.now()
        held = HeldList(
            accepted.wire,
            root.wire,
            accepted.version,
            accepted.issued_at,
            accepted.expires,
            len(accepted.members),
        )

        def accept_txn(conn: Tx) -> None:
            directory_store.accept_list_txn(conn, held, iso(now))
            directory_store.refreshed_txn(conn, at=iso(now))
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="directory.accepted",
                subject=row.name,
                details={
                    "version": accepted.version,
                    "previous_version": row.list_version,
                    "issued_at": accepted.issued_at,
                    "expires": accepted.expires,
                    "members": len(accepted.members),
                    "signed_by": sorted(accepted.signed_by),
                },
            )

        await self.db.run(accept_txn)

    # applying a list ------------------------------------------------------------------------
    async def _apply(
        self, listed: DirectoryList, row: DirectoryRow, actor: str, outcome: RefreshOutcome
    ) -> None:
        peers = {peer.node_id: peer for peer in await self.registry.all(include_removed=True)}
        notes: dict[str, str] = {}
        for member in listed.members:
            if member.node_id == self.node_id:
                continue
            peer = peers.get(member.node_id)
            if peer is None or peer.status == PeerStatus.REMOVED:
                await self._newcomer(member, peer, row, actor, outcome, notes)
            else:
                await self._follow(member, peer, listed.version, actor, outcome, notes)
        names = {member.node_id for member in listed.members}
        for peer in peers.values():
            if (
                peer.via_directory
                and peer.status == PeerStatus.ACTIVE
                and peer.node_id not in names
            ):
                await self.admin.directory_status(peer.node_id, PeerStatus.SUSPENDED, LEFT, actor)
                outcome.changes.append(f"suspended {peer.node_id}: {LEFT}")
        outcome.notes = notes
        await self.db.run(lambda conn: directory_store.set_notes_txn(conn, notes))

    async def _newcomer(
        self,
        member: Member,
        peer: PeerRow | None,
        row: DirectoryRow,
        actor: str,
        outcome: RefreshOutcome,
        notes: dict[str, str],
    ) -> None:
        if peer is not None:
            # The operator removed it: not added back behind their back.
            notes[member.node_id] = "removed by the operator; peers add --from-directory adds it"
            outcome.proposals.append(member.node_id)
            return
        if not row.auto_peer:
            outcome.proposals.append(member.node_id)
            return
        try:
            await self._add(member, actor=actor)
        except (UpstreamError, InvalidInput, Conflict) as exc:
            # Unreachable now, or answering with another identity: a proposal until the next
            # refresh tries again. The refresh itself goes on.
            notes[member.node_id] = str(exc)
            outcome.proposals.append(member.node_id)
            log.warning("directory: %s is not a peer yet: %s", member.node_id, exc)
            return
        outcome.changes.append(f"added {member.node_id} ({member.country})")

    async def _follow(
        self,
        member: Member,
        peer: PeerRow,
        version: int,
        actor: str,
        outcome: RefreshOutcome,
        notes: dict[str, str],
    ) -> None:
        adopt = False
        if not peer.via_directory:
            if peer.fingerprint != member.fingerprint:
                # The operator pinned another identity: theirs stands (only a list that
                # pinned a peer may replace its pin).
                notes[member.node_id] = (
                    f"pinned by the operator to {peer.fingerprint}, not the directory's"
                    f" {member.fingerprint}"
                )
                return
            adopt = True
        if peer.country != member.country:
            notes[member.node_id] = (
                f"listed in {member.country}, but its key document says {peer.country}"
            )
        fingerprint = member.fingerprint if member.fingerprint != peer.fingerprint else None
        endpoint = member.endpoint.rstrip("/")
        moved = endpoint if endpoint != peer.endpoint else None
        if adopt or fingerprint or moved:
            await self.registry.follow_directory(
                peer.node_id,
                fingerprint=fingerprint,
                endpoint=moved,
                adopt=adopt,
                actor=actor,
                version=version,
            )
        if moved:
            outcome.changes.append(f"{peer.node_id} now at {moved}")
        if fingerprint:
            result = await self.admin.keys.refresh_now(peer.node_id)
            outcome.changes.append(f"{peer.node_id} pinned to {fingerprint}")
            if result != "refreshed":
                notes[member.node_id] = f"new pin {fingerprint}: key document {result}"
        if adopt:
            outcome.changes.append(f"{peer.node_id} now follows the directory")
        if peer.status == PeerStatus.SUSPENDED and peer.status_reason == LEFT:
            await self.admin.directory_status(peer.node_id, PeerStatus.ACTIVE, None, actor)
            outcome.changes.append(f"resumed {peer.node_id}: listed again")
        if moved or fingerprint:
            self.admin.deliver_now([peer.node_id])

    async def _add(
        self,
        member: Member,
        *,
        actor: str,
        pull_only: bool = False,
        categories: list[str] | None = None,
        max_tlp: str | None = None,
    ) -> dict[str, Any]:
        return await self.admin.add(
            node_id=member.node_id,
            country=member.country,
            endpoint=member.endpoint,
            fingerprint=member.fingerprint,
            pull_only=pull_only,
            categories=categories or _categories(member),
            max_tlp=max_tlp,
            actor=actor,
            via_directory=True,
        )

    # the operator's other commands ----------------------------------------------------------
    async def add_member(
        self,
        node_id: str,
        *,
        actor: str,
        pull_only: bool = False,
        categories: list[str] | None = None,
        max_tlp: str | None = None,
    ) -> dict[str, Any]:
        """`peers add --from-directory ID`: a proposal accepted, with the list's country,
        endpoint and fingerprint (no fingerprint typed)."""
        listed = await self._held()
        member = listed.member(node_id)
        if member is None:
            raise NotFound(
                N_("{peer} is not a member in the list held (version {version})"),
                peer=node_id,
                version=listed.version,
            )
        if listed.is_expired(self.clock.now()):
            raise Conflict(
                N_(
                    "the member list held (version {version}) expired at {expires}: refresh it"
                    " (directory refresh) before adding a peer from it"
                ),
                version=listed.version,
                expires=_time(listed.expires),
            )
        peer = await self._add(
            member, actor=actor, pull_only=pull_only, categories=categories, max_tlp=max_tlp
        )

        def clear_note_txn(conn: Tx) -> None:
            current = directory_store.get_txn(conn)
            if current is not None and node_id in current.notes:
                directory_store.set_notes_txn(
                    conn, {k: v for k, v in current.notes.items() if k != node_id}
                )

        await self.db.run(clear_note_txn)
        return peer

    async def _held(self) -> DirectoryList:
        row = await directory_store.get(self.db)
        if row is None:
            raise NotFound(NOT_TRUSTED)
        if row.list is None:
            raise NotFound(
                N_("no member list accepted yet from {source} (directory status says why)"),
                source=row.source,
            )
        return _held_list(row)

    async def status(self) -> dict[str, Any]:
        """Version, validity, members (self, peer or proposal), the last refresh, the root."""
        row = await directory_store.get(self.db)
        if row is None:
            return {"trusted": False}
        root = verify_root(row.root)
        now = self.clock.now()
        listed = None if row.list is None else _held_list(row)
        peers = {peer.node_id: peer for peer in await self.registry.all(include_removed=True)}
        members = []
        for member in listed.members if listed else ():
            peer = peers.get(member.node_id)
            if member.node_id == self.node_id:
                state = "self"
            elif peer is None or peer.status == PeerStatus.REMOVED:
                state = "proposal"
            else:
                state = "peer"
            members.append(
                {
                    **member.to_json(),
                    "state": state,
                    "peer_status": None if peer is None or state != "peer" else peer.status,
                    "pinned_by": None
                    if peer is None or state != "peer"
                    else ("directory" if peer.via_directory else "operator"),
                    "note": row.notes.get(member.node_id),
                }
            )
        names = {m["node_id"] for m in members}
        departed = sorted(
            peer.node_id
            for peer in peers.values()
            if peer.via_directory and peer.status_reason == LEFT and peer.node_id not in names
        )
        return {
            "trusted": True,
            "name": row.name,
            "root": {
                "version": root.version,
                "digest": digest(root.wire),
                "threshold": root.threshold,
                "signers": len(root.keys),
            },
            "source": row.source,
            "auto_peer": row.auto_peer,
            "trusted_at": row.trusted_at,
            "version": None if listed is None else listed.version,
            "issued_at": _time(row.list_issued_at),
            "valid_until": _time(row.list_expires),
            "expired": None if listed is None else listed.is_expired(now),
            "accepted_at": row.list_accepted_at,
            "members": members,
            "left": departed,
            "last_refresh": {
                "at": row.refreshed_at,
                "error": row.refresh_error,
                "refusal": row.refusal,
            },
        }

    async def warn_if_expired(self) -> bool:
        """Say in the log that the list held has expired (peers pinned through it keep
        working): at start, and after each scheduled refresh until a newer one is accepted."""
        row = await directory_store.get(self.db)
        if row is None or row.list_expires is None:
            return False
        if to_unix(self.clock.now()) < row.list_expires:
            return False
        log.warning(
            "directory %s: the member list held (version %s) expired at %s; peers pinned"
            " through it keep working, but no newer list has been accepted from %s",
            row.name,
            row.list_version,
            _time(row.list_expires),
            row.source,
        )
        return True


def _held_list(row: DirectoryRow) -> DirectoryList:
    """The list held, read back: verified again under the root it was accepted under (a newer
    root in force since does not undo it; the next list must verify under the newer one)."""
    assert row.list is not None
    return verify_list_signatures(row.list, verify_root(row.list_root or row.root))


def _kept(row: DirectoryRow) -> str:
    if row.list_version is None:
        return "no list is held yet"
    return f"list version {row.list_version} stays in force"


def _root_details(root: Root) -> dict[str, object]:
    """How the audit log describes a root, trusted or rotated to."""
    return {
        "root_version": root.version,
        "root_digest": digest(root.wire),
        "threshold": root.threshold,
        "signers": len(root.keys),
    }
