"""Where a case must go: a pure decision from assessment, hosting evidence, country and peers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from protocol.records import Tlp

# Order matters: a TLP may be shared with a peer whose ceiling is at or above it.
TLP_ORDER = [Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED]


class Decision(StrEnum):
    DOMESTIC = "domestic"
    PEER = "peer"
    FALLBACK = "fallback"
    CDN = "cdn"
    CLOSED = "closed"
    MANUAL = "manual"


class ChannelRole(StrEnum):
    """What routing sends to our national channels; node.toml maps each role to channels."""

    LAW_ENFORCEMENT = "law_enforcement"
    HOST_NOTICE = "host_notice"
    FALLBACK = "fallback"
    CDN_NOTICE = "cdn_notice"


@dataclass(frozen=True)
class PeerView:
    node_id: str
    country: str
    categories: frozenset[str]
    max_tlp: Tlp
    active: bool = True
    # What its key document announces it reads beyond protocol v1 (protocol.features): a
    # report goes to it without what it could not read.
    reads: frozenset[str] = frozenset()

    def accepts(self, category: str, tlp: Tlp) -> bool:
        return (
            self.active
            and category in self.categories
            and TLP_ORDER.index(tlp) <= TLP_ORDER.index(self.max_tlp)
        )


# Why a case hosted where a peer hotline exists went to the fallback instead: recorded on the
# target, shown with the case and counted by `stats`, so that no rerouting is silent.
REROUTED_SUSPENDED = "peer_suspended"
REROUTED_TLP = "above_peer_max_tlp"
REROUTED_CATEGORY = "category_not_accepted"


@dataclass(frozen=True)
class Target:
    kind: str  # "peer" or "channel"
    name: str  # peer node id or channel role
    country: str | None
    reason: str
    rerouted: str | None = None  # one of the REROUTED_* codes, for a fallback target

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "country": self.country,
            "reason": self.reason,
        }
        if self.rerouted:
            out["rerouted"] = self.rerouted
        return out


@dataclass(frozen=True)
class RoutingDecision:
    decision: Decision
    targets: list[Target] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostingFacts:
    """What routing needs from a trace: per-address countries and CDN flags."""

    traced: bool
    countries: list[str]
    unknown_addresses: int
    cdn: bool
    cdn_name: str | None = None
    override_country: str | None = None


_PRIORITY = [Decision.DOMESTIC, Decision.PEER, Decision.FALLBACK, Decision.CDN]


def decide(
    *,
    verdict: str,
    category: str,
    tlp: Tlp,
    hosting: HostingFacts,
    our_country: str,
    peers: list[PeerView],
    is_origin: bool = True,
) -> RoutingDecision:
    """Decide, with a reason per target. Several hosting countries give several targets."""
    if verdict == "not_illegal":
        return RoutingDecision(Decision.CLOSED, [], ["assessed as not illegal: case closed"])
    countries = [hosting.override_country] if hosting.override_country else hosting.countries
    if not hosting.traced and not hosting.override_country:
        return RoutingDecision(Decision.MANUAL, [], ["hosting could not be traced"])
    if not hosting.override_country and hosting.unknown_addresses and countries:
        return RoutingDecision(
            Decision.MANUAL,
            [],
            [
                f"conflicting evidence: {hosting.unknown_addresses} address(es) without a "
                f"country next to {', '.join(countries)}"
            ],
        )
    targets: list[Target] = []
    reasons: list[str] = []
    if hosting.override_country:
        reasons.append(f"jurisdiction set by an analyst: {hosting.override_country}")
    elif hosting.cdn:
        label = hosting.cdn_name or "a CDN"
        targets.append(
            Target(
                "channel",
                ChannelRole.CDN_NOTICE,
                None,
                f"served through {label}: ask its abuse desk for the origin host",
            )
        )
        reasons.append(f"content is behind {label}; the CDN's abuse desk is notified")
    if not countries and not targets:
        return RoutingDecision(Decision.MANUAL, [], ["no hosting country found"])
    kinds: set[Decision] = {Decision.CDN} if targets else set()
    for country in sorted(set(countries)):
        if country == our_country:
            kinds.add(Decision.DOMESTIC)
            targets.append(
                Target("channel", ChannelRole.LAW_ENFORCEMENT, country, "hosted in our country")
            )
            targets.append(
                Target("channel", ChannelRole.HOST_NOTICE, country, "hosted in our country")
            )
            continue
        if not is_origin:
            # Reports are never relayed onward: a peer's report hosted elsewhere needs an analyst.
            reasons.append(f"hosted in {country}, reported by a peer: not relayed")
            kinds.add(Decision.MANUAL)
            continue
        # Suspended peers count here: a case that would have gone to one says so.
        candidates = [p for p in peers if p.country == country]
        accepting = [p for p in candidates if p.accepts(category, tlp)]
        if accepting:
            kinds.add(Decision.PEER)
            for peer in accepting:
                targets.append(
                    Target(
                        "peer", peer.node_id, country, f"hotline of {country} accepts {category}"
                    )
                )
        else:
            kinds.add(Decision.FALLBACK)
            code, why = _why_not(candidates, category, tlp) if candidates else (None, "")
            why = f"rerouted to the fallback: {why}" if code else f"no peer hotline in {country}"
            targets.append(Target("channel", ChannelRole.FALLBACK, country, why, code))
    if Decision.MANUAL in kinds and not targets:
        return RoutingDecision(Decision.MANUAL, [], reasons)
    decision = next(kind for kind in _PRIORITY if kind in kinds)
    return RoutingDecision(decision, targets, reasons + [t.reason for t in targets])


def _why_not(candidates: list[PeerView], category: str, tlp: Tlp) -> tuple[str, str]:
    """The reroute code and the words for it: why no peer of that country takes the case."""
    reasons: list[str] = []
    codes: list[str] = []
    for peer in candidates:
        if not peer.active:
            codes.append(REROUTED_SUSPENDED)
            reasons.append(f"peer {peer.node_id} is suspended")
        elif category not in peer.categories:
            codes.append(REROUTED_CATEGORY)
            reasons.append(f"peer {peer.node_id} does not accept {category}")
        else:
            codes.append(REROUTED_TLP)
            reasons.append(
                f"the case is TLP:{tlp.value.upper()}, above peer {peer.node_id}'s maximum"
                f" TLP:{peer.max_tlp.value.upper()}"
            )
    # With several peers in one country, the first one's reason is the case's code.
    return codes[0], "; ".join(reasons)
