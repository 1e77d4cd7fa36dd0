"""Typed errors of the jurisdiction trace, each with a one-line message fit for an analyst."""

from __future__ import annotations


class JurisdictionError(Exception):
    """Base of every error raised while tracing where a URL is hosted.

    `code` is a stable machine-readable slug (for problem+json `type` and CLI exit mapping);
    `str(error)` is the one-line human message.
    """

    code = "jurisdiction_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class JurisdictionConfigError(JurisdictionError):
    """A configuration value (override line, mmdb path, DNS server, CDN data) is unusable."""

    code = "jurisdiction_config"


class InvalidUrlError(JurisdictionError):
    """The URL has no host, or its host cannot be turned into a DNS name or an IP address."""

    code = "invalid_url"


class DnsError(JurisdictionError):
    """Resolving the host failed; `host` is the IDNA-encoded name that was asked."""

    code = "dns_error"

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host


class NoSuchHostError(DnsError):
    """NXDOMAIN: the name does not exist."""

    code = "dns_no_such_host"

    def __init__(self, host: str) -> None:
        super().__init__(host, f"no such host: {host}")


class DnsTimeoutError(DnsError):
    """No DNS server answered within the configured lifetime."""

    code = "dns_timeout"

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__(host, f"DNS timeout: no answer for {host} within {timeout:g}s")
        self.timeout = timeout


class NoAddressError(DnsError):
    """The name exists but has neither A nor AAAA records."""

    code = "dns_no_address"

    def __init__(self, host: str) -> None:
        super().__init__(host, f"no address: {host} has no A or AAAA record")


class DnsServerError(DnsError):
    """The DNS server failed (SERVFAIL, REFUSED, unreachable, malformed answer)."""

    code = "dns_server_error"

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(host, f"DNS server failure for {host}: {detail}")


class GeoDataError(JurisdictionError):
    """An IP data source (mmdb file, geofeed) could not answer."""

    code = "geo_data_error"


class RdapError(JurisdictionError):
    """An RDAP lookup failed; the trace goes on without an abuse contact."""

    code = "rdap_error"


class RdapRateLimitedError(RdapError):
    """The RDAP server answered 429; `retry_after` is in seconds when the server said."""

    code = "rdap_rate_limited"

    def __init__(self, ip: str, retry_after: float | None) -> None:
        after = f", retry after {retry_after:g}s" if retry_after is not None else ""
        super().__init__(f"RDAP rate limited for {ip}{after}")
        self.ip = ip
        self.retry_after = retry_after


class RdapTimeoutError(RdapError):
    """The RDAP server did not answer in time."""

    code = "rdap_timeout"

    def __init__(self, ip: str, timeout: float) -> None:
        super().__init__(f"RDAP timeout for {ip} after {timeout:g}s")
        self.ip = ip
        self.timeout = timeout


class RdapResponseError(RdapError):
    """The RDAP server answered with an unexpected status or a body that is not RDAP JSON."""

    code = "rdap_bad_response"
