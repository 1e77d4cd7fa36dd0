"""A node that trusts a member directory (node/federation/directory.py), on live nodes in this
process with a manual clock: what an accepted list changes, what a refused one does not, an
expired list held, proposals, and a pin that follows the list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.canonical import canonical_json
from keys.document import to_unix
from node.clock import ManualClock
from node.config import parse_config
from node.errors import ConfigError, DirectoryRefused, NotFound, UpstreamError
from node.federation.directory import LEFT
from node.store import directory as directory_store
from node.umbrella import digest
from peers.model import PeerStatus
from protocol.directory import Member, list_document, root_document, sign, wire_form
from tests.node.test_metrics import parse, value
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import LiveNode, live_node, node_dir


@dataclass
class Umbrella:
    """The umbrella body's side, signed with protocol/directory.py: a root 2 of 3, lists."""

    folder: Path
    clock: ManualClock
    name: str = "inhope"
    keys: list[Ed25519PrivateKey] = field(
        default_factory=lambda: [Ed25519PrivateKey.generate() for _ in range(3)]
    )
    version: int = 0

    @property
    def source(self) -> Path:
        return self.folder / "directory.json"

    def root(self) -> bytes:
        document = root_document(
            name=self.name, version=1, threshold=2, keys=[k.public_key() for k in self.keys]
        )
        return wire_form(document, [sign(document, key) for key in self.keys])

    def members(self, *nodes: LiveNode, **override: dict[str, str]) -> list[Member]:
        return [
            Member.model_validate(
                {
                    "node_id": node.node_id,
                    "country": node.node.config.country,
                    "endpoint": node.url,
                    "fingerprint": node.fingerprint,
                    **override.get(node.node_id, {}),
                }
            )
            for node in nodes
        ]

    def wire(
        self, members: list[Member], *, signers: int = 2, days: int = 7, version: int | None = None
    ) -> bytes:
        self.version = version if version is not None else self.version + 1
        issued = to_unix(self.clock.now())
        document = list_document(
            name=self.name,
            version=self.version,
            issued_at=issued,
            expires=issued + days * 86400,
            members=members,
        )
        return wire_form(document, [sign(document, key) for key in self.keys[:signers]])

    def publish(self, members: list[Member], **options: Any) -> bytes:
        wire = self.wire(members, **options)
        self.source.write_bytes(wire)
        return wire


@dataclass
class Net:
    fr: LiveNode
    de: LiveNode
    us: LiveNode
    umbrella: Umbrella


@pytest.fixture
async def net(tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer) -> AsyncIterator[Net]:
    dirs = {
        node_id: node_dir(tmp_path, node_id, country, clock, dns_server.nameserver)
        for node_id, country in (("fr-pdc", "FR"), ("de-eco", "DE"), ("us-ncmec", "US"))
    }
    folder = tmp_path / "published"
    folder.mkdir()
    async with (
        live_node(*dirs["fr-pdc"], clock) as fr,
        live_node(*dirs["de-eco"], clock) as de,
        live_node(*dirs["us-ncmec"], clock) as us,
    ):
        yield Net(fr, de, us, Umbrella(folder, clock))


async def trust(node: LiveNode, umbrella: Umbrella, *, auto_peer: bool = True) -> dict[str, Any]:
    return await node.node.directory.trust(
        umbrella.root(), str(umbrella.source), auto_peer=auto_peer, actor="olivier"
    )


async def peer_states(node: LiveNode) -> dict[str, tuple[str, str | None, bool]]:
    return {
        row.node_id: (row.status, row.status_reason, row.via_directory)
        for row in await node.node.registry.all(include_removed=True)
    }


async def audit_events(node: LiveNode, prefix: str) -> list[dict[str, Any]]:
    rows = await node.node.db.fetch_all(
        "SELECT event, details FROM audit_log WHERE event LIKE ? ORDER BY seq", (prefix + "%",)
    )
    return [{"event": row[0], **orjson.loads(row[1])} for row in rows]


async def test_members_become_peers_pinned_to_the_list_with_no_fingerprint_typed(
    net: Net,
) -> None:
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us))
    result = await trust(net.fr, net.umbrella)
    assert result["root_digest"] == digest(net.umbrella.root())
    assert result["refresh"]["state"] == "accepted"
    assert sorted(result["refresh"]["changes"]) == ["added de-eco (DE)", "added us-ncmec (US)"]
    assert await peer_states(net.fr) == {
        "de-eco": ("active", None, True),
        "us-ncmec": ("active", None, True),
    }
    de = await net.fr.node.registry.peer("de-eco")
    assert de.fingerprint == net.de.fingerprint
    assert de.endpoint == net.de.url
    status = await net.fr.node.directory.status()
    assert (status["version"], status["expired"], status["auto_peer"]) == (1, False, True)
    assert {m["node_id"]: m["state"] for m in status["members"]} == {
        "de-eco": "peer",
        "fr-pdc": "self",
        "us-ncmec": "peer",
    }
    assert status["root"]["digest"] == result["root_digest"]
    assert status["last_refresh"]["error"] is None
    events = [e["event"] for e in await audit_events(net.fr, "directory.")]
    assert events == ["directory.trusted", "directory.accepted"]
    added = list(await audit_events(net.fr, "peer.added"))
    assert all(e["via"] == "directory" for e in added)

    # The same list fetched again changes nothing.
    outcome = await net.fr.node.directory.refresh("olivier")
    assert (outcome.state, outcome.changes) == ("unchanged", [])


async def test_a_tampered_and_an_under_signed_list_are_refused_and_the_last_good_kept(
    net: Net,
) -> None:
    net.umbrella.publish(net.umbrella.members(net.fr, net.de))
    await trust(net.fr, net.umbrella)
    good = net.umbrella.source.read_bytes()

    # One signature of the two needed.
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us), signers=1)
    with pytest.raises(DirectoryRefused) as refused:
        await net.fr.node.directory.refresh("scheduler")
    assert refused.value.refusal == "signatures"
    assert "list version 1 stays in force" in str(refused.value)

    # A member's fingerprint changed after signing.
    tampered = net.umbrella.wire(net.umbrella.members(net.fr, net.de))
    net.umbrella.source.write_bytes(
        tampered.replace(net.de.fingerprint.encode(), net.us.fingerprint.encode())
    )
    with pytest.raises(DirectoryRefused) as refused:
        await net.fr.node.directory.refresh("scheduler")
    assert refused.value.refusal == "signatures"

    # An older list, validly signed.
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us), version=1)
    with pytest.raises(DirectoryRefused) as refused:
        await net.fr.node.directory.refresh("scheduler")
    assert refused.value.refusal == "stale"

    row = await directory_store.get(net.fr.node.db)
    assert row is not None
    assert row.list == good
    assert row.list_version == 1
    status = await net.fr.node.directory.status()
    assert status["version"] == 1
    assert [m["node_id"] for m in status["members"]] == ["de-eco", "fr-pdc"]
    assert status["last_refresh"]["refusal"] == "stale"
    assert (await peer_states(net.fr)).keys() == {"de-eco"}
    refusals = [e["refusal"] for e in await audit_events(net.fr, "directory.refused")]
    assert refusals == ["signatures", "signatures", "stale"]


async def test_a_member_removed_is_suspended_and_resumed_when_listed_again(net: Net) -> None:
    umbrella = net.umbrella
    umbrella.publish(umbrella.members(net.fr, net.de, net.us))
    await trust(net.fr, umbrella)
    umbrella.publish(umbrella.members(net.fr, net.de))
    outcome = await net.fr.node.directory.refresh("olivier")
    assert outcome.changes == [f"suspended us-ncmec: {LEFT}"]
    assert (await peer_states(net.fr))["us-ncmec"] == ("suspended", LEFT, True)
    assert not net.fr.node.registry.is_active("us-ncmec")  # what it sends is refused
    described = await net.fr.node.registry.describe("us-ncmec")
    assert described["status_reason"] == LEFT
    assert (await net.fr.node.directory.status())["left"] == ["us-ncmec"]

    umbrella.publish(umbrella.members(net.fr, net.de, net.us))
    outcome = await net.fr.node.directory.refresh("olivier")
    assert outcome.changes == ["resumed us-ncmec: listed again"]
    assert (await peer_states(net.fr))["us-ncmec"] == ("active", None, True)


async def test_an_operator_who_resumes_a_peer_that_left_takes_it_over(net: Net) -> None:
    umbrella = net.umbrella
    umbrella.publish(umbrella.members(net.fr, net.de))
    await trust(net.fr, umbrella)
    umbrella.publish(umbrella.members(net.fr))
    await net.fr.node.directory.refresh("olivier")
    await net.fr.node.admin.set_status("de-eco", PeerStatus.ACTIVE, "olivier")
    assert (await peer_states(net.fr))["de-eco"] == ("active", None, False)
    umbrella.publish(umbrella.members(net.fr), days=8)
    outcome = await net.fr.node.directory.refresh("olivier")
    assert outcome.changes == []  # not suspended again: the operator's peer now


async def test_without_auto_peer_members_are_proposals_added_one_by_one(net: Net) -> None:
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us))
    result = await trust(net.fr, net.umbrella, auto_peer=False)
    assert result["refresh"]["proposals"] == ["de-eco", "us-ncmec"]
    assert await peer_states(net.fr) == {}
    peer = await net.fr.node.directory.add_member("de-eco", actor="olivier")
    assert (peer["node_id"], peer["fingerprint"], peer["pinned_by"]) == (
        "de-eco",
        net.de.fingerprint,
        "directory",
    )
    states = {m["node_id"]: m["state"] for m in (await net.fr.node.directory.status())["members"]}
    assert states == {"de-eco": "peer", "fr-pdc": "self", "us-ncmec": "proposal"}
    with pytest.raises(NotFound, match="not a member"):
        await net.fr.node.directory.add_member("za-fpb", actor="olivier")


async def test_an_unreachable_member_stays_a_proposal_and_is_added_at_the_next_refresh(
    net: Net,
) -> None:
    await net.us.stop_http()
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us))
    result = await trust(net.fr, net.umbrella)
    assert result["refresh"]["state"] == "accepted"
    assert result["refresh"]["proposals"] == ["us-ncmec"]
    assert "us-ncmec" in result["refresh"]["notes"]
    status = await net.fr.node.directory.status()
    us = next(m for m in status["members"] if m["node_id"] == "us-ncmec")
    assert us["state"] == "proposal"
    assert us["note"]

    await net.us.start_http()
    outcome = await net.fr.node.directory.refresh("scheduler")
    assert (outcome.state, outcome.changes) == ("unchanged", ["added us-ncmec (US)"])
    assert outcome.notes == {}


async def test_a_new_identity_in_the_list_replaces_the_pin_and_nothing_else_does(
    net: Net, tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> None:
    umbrella = net.umbrella
    umbrella.publish(umbrella.members(net.fr, net.de, net.us))
    await trust(net.fr, umbrella)
    old = net.de.fingerprint
    # de-eco starts again with a fresh identity, at another address.
    data_dir, url = node_dir(tmp_path / "rekeyed", "de-eco", "DE", clock, dns_server.nameserver)
    async with live_node(data_dir, url, clock) as rekeyed:
        assert rekeyed.fingerprint != old
        # A list that does not change de-eco's entry leaves the pin alone, whatever answers
        # at its endpoint.
        umbrella.publish(umbrella.members(net.fr, net.de, net.us))
        await net.fr.node.directory.refresh("olivier")
        assert (await net.fr.node.registry.peer("de-eco")).fingerprint == old

        umbrella.publish(umbrella.members(net.fr, rekeyed, net.us))
        outcome = await net.fr.node.directory.refresh("olivier")
        assert f"de-eco pinned to {rekeyed.fingerprint}" in outcome.changes
        assert f"de-eco now at {url}" in outcome.changes
        peer = await net.fr.node.registry.peer("de-eco")
        assert (peer.fingerprint, peer.endpoint) == (rekeyed.fingerprint, url)
        described = await net.fr.node.registry.describe("de-eco")
        assert described["keys"], "the key document was fetched again, against the new pin"
        assert outcome.notes == {}
        assert net.fr.node.registry.keys_for("de-eco") is not None
        repinned = await audit_events(net.fr, "peer.directory")
        assert repinned[-1]["fingerprint"] == rekeyed.fingerprint


async def test_an_operators_peer_pinned_to_another_key_is_left_alone(net: Net) -> None:
    umbrella = net.umbrella
    await net.fr.node.admin.add(
        node_id="de-eco",
        country="DE",
        endpoint=net.de.url,
        fingerprint=net.de.fingerprint,
        actor="olivier",
    )
    # The list gives de-eco another fingerprint (us-ncmec's, for the test): not the operator's.
    umbrella.publish(
        umbrella.members(net.fr, net.de, **{"de-eco": {"fingerprint": net.us.fingerprint}})
    )
    result = await trust(net.fr, umbrella)
    assert "pinned by the operator" in result["refresh"]["notes"]["de-eco"]
    peer = await net.fr.node.registry.peer("de-eco")
    assert (peer.fingerprint, peer.via_directory) == (net.de.fingerprint, False)
    # The same fingerprint: the operator's peer is adopted, and follows the list from now on.
    umbrella.publish(umbrella.members(net.fr, net.de))
    outcome = await net.fr.node.directory.refresh("olivier")
    assert outcome.changes == ["de-eco now follows the directory"]
    assert (await net.fr.node.registry.peer("de-eco")).via_directory


async def test_an_expired_list_held_stays_in_force_and_says_so(
    net: Net, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    net.umbrella.publish(net.umbrella.members(net.fr, net.de), days=1)
    await trust(net.fr, net.umbrella)
    assert not await net.fr.node.directory.warn_if_expired()
    clock.advance(timedelta(days=2))
    assert await net.fr.node.directory.warn_if_expired()
    assert "the member list held (version 1) expired at" in caplog.text  # serve's log says it
    status = await net.fr.node.directory.status()
    assert (status["version"], status["expired"]) == (1, True)
    # The same list again: unchanged, still in force, still expired; the peer keeps working.
    outcome = await net.fr.node.directory.refresh("scheduler")
    assert outcome.state == "unchanged"
    assert net.fr.node.registry.is_active("de-eco")
    # A list that expired before it arrives is refused.
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us), days=1)
    clock.advance(timedelta(days=2))
    with pytest.raises(DirectoryRefused) as refused:
        await net.fr.node.directory.refresh("scheduler")
    assert refused.value.refusal == "expired"

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{net.fr.url}/metrics") as response,
    ):
        samples = parse(await response.text())
    row = await directory_store.get(net.fr.node.db)
    assert row is not None
    assert value(samples, "hotline_directory_version") == 1
    assert value(samples, "hotline_directory_expired") == 1
    assert value(samples, "hotline_directory_members") == 2
    assert value(samples, "hotline_directory_expires_timestamp_seconds") == row.list_expires


async def test_refresh_without_a_directory_or_a_list_says_so(net: Net) -> None:
    with pytest.raises(NotFound, match="no member directory is trusted"):
        await net.fr.node.directory.refresh("olivier")
    assert await net.fr.node.directory.status() == {"trusted": False}
    assert await net.fr.node.directory.refresh_if_trusted("scheduler") is None
    result = await trust(net.fr, net.umbrella)  # nothing published yet
    assert result["refresh"] is None
    assert "no member list at" in result["refresh_error"]
    status = await net.fr.node.directory.status()
    assert status["version"] is None
    assert "no member list" in status["last_refresh"]["error"]
    with pytest.raises(UpstreamError):
        await net.fr.node.directory.refresh("olivier")
    with pytest.raises(NotFound, match="no member list accepted yet"):
        await net.fr.node.directory.add_member("de-eco", actor="olivier")


async def test_a_root_that_does_not_verify_is_not_trusted(net: Net) -> None:
    root = net.umbrella.root()
    document = orjson.loads(root)
    document["signatures"] = document["signatures"][:1]

    with pytest.raises(DirectoryRefused, match=r"directory root refused \(signatures\)"):
        await net.fr.node.directory.trust(
            canonical_json(document), str(net.umbrella.source), auto_peer=True, actor="o"
        )
    assert await directory_store.get(net.fr.node.db) is None


async def test_rotation_is_followed_from_files_next_to_the_list(net: Net) -> None:
    umbrella = net.umbrella
    umbrella.publish(umbrella.members(net.fr, net.de))
    await trust(net.fr, umbrella)
    new_keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    document = root_document(
        name=umbrella.name, version=2, threshold=2, keys=[k.public_key() for k in new_keys]
    )
    # Signed by the new keys only: refused, and the list held stays.
    (umbrella.folder / "root-2.json").write_bytes(
        wire_form(document, [sign(document, k) for k in new_keys])
    )
    with pytest.raises(DirectoryRefused, match="root version 2 refused"):
        await net.fr.node.directory.refresh("olivier")
    (umbrella.folder / "root-2.json").write_bytes(
        wire_form(document, [sign(document, k) for k in [*umbrella.keys[:2], *new_keys[:2]]])
    )
    old_keys = umbrella.keys
    umbrella.publish(umbrella.members(net.fr, net.de, net.us))  # still signed by the old keys
    with pytest.raises(DirectoryRefused, match=r"member list refused \(signatures\)"):
        await net.fr.node.directory.refresh("olivier")
    status = await net.fr.node.directory.status()
    assert (status["root"]["version"], status["version"]) == (2, 1)
    umbrella.keys = new_keys
    umbrella.publish(umbrella.members(net.fr, net.de, net.us))
    outcome = await net.fr.node.directory.refresh("olivier")
    assert (outcome.state, outcome.version, outcome.rotated_to) == ("accepted", 3, [])
    assert old_keys != new_keys
    events = [e["event"] for e in await audit_events(net.fr, "directory.")]
    assert events.count("directory.root_rotated") == 1


def test_refresh_minutes_defaults_to_an_hour_and_is_bounded() -> None:
    base = {"node_id": "fr-pdc", "country": "FR", "endpoint": "http://127.0.0.1:9"}
    assert parse_config(base).directory.refresh_minutes == 60
    with pytest.raises(ConfigError, match=r"directory\.refresh_minutes"):
        parse_config({**base, "directory": {"refresh_minutes": 0}})


async def test_the_scheduler_refreshes_the_list_every_refresh_minutes(net: Net) -> None:
    scheduler = AsyncIOScheduler()
    net.fr.node.jobs.install(scheduler)
    job = scheduler.get_job("directory")
    assert job is not None
    assert job.trigger.interval == timedelta(minutes=60)
    net.umbrella.publish(net.umbrella.members(net.fr, net.de))
    await trust(net.fr, net.umbrella, auto_peer=False)
    net.umbrella.publish(net.umbrella.members(net.fr, net.de, net.us))
    await net.fr.node.jobs.refresh_directory()
    assert (await net.fr.node.directory.status())["version"] == 2
    net.umbrella.publish(net.umbrella.members(net.fr), signers=1)
    await net.fr.node.jobs.refresh_directory()  # refused: recorded, not raised
    status = await net.fr.node.directory.status()
    assert (status["version"], status["last_refresh"]["refusal"]) == (2, "signatures")
