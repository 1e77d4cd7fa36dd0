"""The routing table: every decision from assessment, hosting facts, country and peers."""

from __future__ import annotations

import pytest

from node.routing import Decision, HostingFacts, PeerView, decide
from protocol.records import Tlp

DE_PEER = PeerView("de-eco", "DE", frozenset({"csam", "hate"}), Tlp.AMBER)
DE_CSAM_ONLY = PeerView("de-eco", "DE", frozenset({"csam"}), Tlp.AMBER)
US_PEER = PeerView("us-ncmec", "US", frozenset({"csam"}), Tlp.RED)
SUSPENDED_US = PeerView("us-ncmec", "US", frozenset({"csam"}), Tlp.RED, active=False)


def facts(
    *countries: str,
    unknown: int = 0,
    cdn: bool = False,
    traced: bool = True,
    override: str | None = None,
) -> HostingFacts:
    return HostingFacts(
        traced, list(countries), unknown, cdn, "Cloudflare" if cdn else None, override
    )


CASES = [
    # id, verdict, category, tlp, hosting, peers, decision, targets (kind:name:country)
    ("not-illegal", "not_illegal", "csam", Tlp.AMBER, facts("DE"), [DE_PEER], Decision.CLOSED, []),
    (
        "domestic",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("FR"),
        [DE_PEER],
        Decision.DOMESTIC,
        ["channel:law_enforcement:FR", "channel:host_notice:FR"],
    ),
    (
        "peer",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("DE"),
        [DE_PEER],
        Decision.PEER,
        ["peer:de-eco:DE"],
    ),
    (
        "peer-refuses-category",
        "national",
        "hate",
        Tlp.AMBER,
        facts("DE"),
        [DE_CSAM_ONLY],
        Decision.FALLBACK,
        ["channel:fallback:DE"],
    ),
    (
        "peer-tlp-too-high",
        "baseline",
        "csam",
        Tlp.RED,
        facts("DE"),
        [DE_PEER],
        Decision.FALLBACK,
        ["channel:fallback:DE"],
    ),
    (
        "no-peer",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("ZA"),
        [DE_PEER],
        Decision.FALLBACK,
        ["channel:fallback:ZA"],
    ),
    (
        "suspended-peer",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("US"),
        [SUSPENDED_US],
        Decision.FALLBACK,
        ["channel:fallback:US"],
    ),
    (
        "cdn",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts(cdn=True),
        [DE_PEER],
        Decision.CDN,
        ["channel:cdn_notice:None"],
    ),
    (
        "untraced",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts(traced=False),
        [DE_PEER],
        Decision.MANUAL,
        [],
    ),
    ("no-country", "baseline", "csam", Tlp.AMBER, facts(), [DE_PEER], Decision.MANUAL, []),
    (
        "conflicting",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("DE", unknown=1),
        [DE_PEER],
        Decision.MANUAL,
        [],
    ),
    (
        "several-countries",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts("DE", "FR", "US"),
        [DE_PEER, US_PEER],
        Decision.DOMESTIC,
        [
            "peer:de-eco:DE",
            "channel:law_enforcement:FR",
            "channel:host_notice:FR",
            "peer:us-ncmec:US",
        ],
    ),
    (
        "override",
        "baseline",
        "csam",
        Tlp.AMBER,
        facts(traced=False, override="DE"),
        [DE_PEER],
        Decision.PEER,
        ["peer:de-eco:DE"],
    ),
]


@pytest.mark.parametrize(
    ("verdict", "category", "tlp", "hosting", "peers", "expected", "targets"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_routing_table(
    verdict: str,
    category: str,
    tlp: Tlp,
    hosting: HostingFacts,
    peers: list[PeerView],
    expected: Decision,
    targets: list[str],
) -> None:
    result = decide(
        verdict=verdict, category=category, tlp=tlp, hosting=hosting, our_country="FR", peers=peers
    )
    assert result.decision is expected
    assert [f"{t.kind}:{t.name}:{t.country}" for t in result.targets] == targets
    assert result.reasons, "every decision carries a reason"


def test_report_from_a_peer_is_never_relayed_onward() -> None:
    result = decide(
        verdict="baseline",
        category="csam",
        tlp=Tlp.AMBER,
        hosting=facts("US"),
        our_country="FR",
        peers=[US_PEER],
        is_origin=False,
    )
    assert result.decision is Decision.MANUAL
    assert result.targets == []
    assert "not relayed" in result.reasons[0]
