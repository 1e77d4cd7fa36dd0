"""Jurisdiction: where a reported URL is hosted, from DNS, IP data and RDAP (never the host)."""

from node.jurisdiction.cdn import CdnDetector, CdnProvider, parse_asn_list
from node.jurisdiction.dns import DnsResolver, Resolution, Resolver, host_from_url
from node.jurisdiction.errors import (
    DnsError,
    DnsServerError,
    DnsTimeoutError,
    GeoDataError,
    InvalidUrlError,
    JurisdictionConfigError,
    JurisdictionError,
    NoAddressError,
    NoSuchHostError,
    RdapError,
    RdapRateLimitedError,
    RdapResponseError,
    RdapTimeoutError,
)
from node.jurisdiction.geo import (
    GeoAnswer,
    GeoChain,
    IptoccProvider,
    MmdbAsnProvider,
    MmdbCountryProvider,
    OverrideProvider,
)
from node.jurisdiction.rdap import DEFAULT_RDAP_BASE, RdapClient, RdapNetwork
from node.jurisdiction.trace import TracedAddress, Tracer, TraceResult, build_tracer

__all__ = [
    "DEFAULT_RDAP_BASE",
    "CdnDetector",
    "CdnProvider",
    "DnsError",
    "DnsResolver",
    "DnsServerError",
    "DnsTimeoutError",
    "GeoAnswer",
    "GeoChain",
    "GeoDataError",
    "InvalidUrlError",
    "IptoccProvider",
    "JurisdictionConfigError",
    "JurisdictionError",
    "MmdbAsnProvider",
    "MmdbCountryProvider",
    "NoAddressError",
    "NoSuchHostError",
    "OverrideProvider",
    "RdapClient",
    "RdapError",
    "RdapNetwork",
    "RdapRateLimitedError",
    "RdapResponseError",
    "RdapTimeoutError",
    "Resolution",
    "Resolver",
    "TraceResult",
    "TracedAddress",
    "Tracer",
    "build_tracer",
    "host_from_url",
    "parse_asn_list",
]
