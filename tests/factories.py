"""Shared test builders: node key pairs, peer directories and realistic records."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID, uuid4

from keys import NodeKeys, PublicKeySet, SigningKey, build_key_document
from keys.document import to_unix
from protocol import Report
from protocol.envelope import Header, signed_bytes
from protocol.records import Assessment, ContentHash, Hosting, HostingAddress
from protocol.recovery import SignedRecord

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@dataclass
class TestNode:
    node_id: str
    country: str
    keys: NodeKeys

    def public(self, at: datetime = NOW) -> PublicKeySet:
        document = build_key_document(
            self.keys,
            node_id=self.node_id,
            country=self.country,
            endpoint=f"http://127.0.0.1/{self.node_id}",
            now=at,
        )
        return PublicKeySet.from_document(document)


def make_node(node_id: str, country: str, at: datetime = NOW, *, hybrid: bool = False) -> TestNode:
    """A node with fresh keys; classic only unless `hybrid` (the protocol tests are written
    for the classic suite, the hybrid ones ask for it)."""
    keys = NodeKeys.generate(at)
    return TestNode(node_id, country, keys if hybrid else replace(keys, hybrid=[]))


class Directory:
    """A PeerDirectory over a dict, as the node's peer registry will provide."""

    def __init__(self, *nodes: TestNode) -> None:
        self.entries = {node.node_id: node.public() for node in nodes}

    def keys_for(self, node_id: str) -> PublicKeySet | None:
        return self.entries.get(node_id)


def sample_report(origin: str = "fr-pointdecontact", report_id: UUID | None = None) -> Report:
    """A realistic report of about 2 KB once serialised."""
    return Report(
        id=report_id or uuid4(),
        origin=origin,
        seq=1,
        local_ref="PDC-2026-0042137",
        received_at=NOW,
        assessed_at=NOW,
        url="https://files.example-host.de/gallery/a81f3c9e/index.html",
        item_urls=[
            f"https://files.example-host.de/gallery/a81f3c9e/img_{n:04d}.jpg" for n in range(12)
        ],
        content_type="image",
        site_type="image_host",
        assessment=Assessment(
            verdict="baseline",
            category="csam",
            legal_basis="Code pénal art. 227-23",
            victim_age_group="prepubescent",
            flags=["commercial"],
        ),
        hosting=Hosting(
            addresses=[
                HostingAddress(
                    ip="88.198.12.34",
                    country="DE",
                    basis="registration",
                    source="iptocc",
                    source_date="2026-11-01",
                    asn=24940,
                    network_name="HETZNER-DC",
                ),
                HostingAddress(
                    ip="2a01:4f8:10a:1::2",
                    country="DE",
                    basis="registration",
                    source="iptocc",
                    source_date="2026-11-01",
                    asn=24940,
                    network_name="HETZNER-DC",
                ),
            ],
            countries=["DE"],
            abuse_contact="abuse@hetzner.example",
            traced_at=NOW,
        ),
        hashes=[ContentHash(alg="sha256", value=f"{n:064x}") for n in range(4)]
        + [ContentHash(alg="md5", value=f"{n:032x}") for n in range(4)],
        tlp="amber",
        notes="Reported by the public; gallery of 12 images, confirmed by two analysts.",
    )


def signed_record(
    payload: bytes,
    *,
    record_type: str,
    sender: str,
    signing_key: SigningKey,
    to: str,
    to_kid: str = "A" * 43,
    created: datetime = NOW,
) -> SignedRecord:
    """What a holder keeps of a record: a header as `seal` writes it and a signature over it
    and `payload` by `signing_key` (any header, to build the records a holder could forge)."""
    header = Header(
        v=1,
        suite="hpke-base-x25519-sha256-aes256gcm",
        from_=sender,
        from_kid=signing_key.kid,
        to=to,
        to_kid=to_kid,
        msg_id=str(uuid4()),
        created_at=to_unix(created),
        type=record_type,  # type: ignore[arg-type]
    ).to_bytes()
    return SignedRecord(header, signing_key.private.sign(signed_bytes(header, payload)), payload)
