"""Reported URLs: validation and the normalised key that makes duplicates join one case."""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from node.contacts import url_characters
from node.errors import N_, InvalidInput
from node.jurisdiction.dns import normalise_host
from node.jurisdiction.errors import InvalidUrlError

MAX_URL_LENGTH = 4096
# `\s` is str.isspace() (both are Py_UNICODE_ISSPACE); one regex pass instead of a Python loop.
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=4096)
def _idna_host(host: str) -> str:
    """The host exactly as the trace reads it (node.jurisdiction.dns.normalise_host).

    Python's "idna" codec is IDNA 2003, which maps "straße.de" to "strasse.de": another
    domain than browsers (IDNA 2008 / UTS 46) and the trace visit. One reading for both.
    Cached: reports come in clusters on the same hosts, and a received batch normalises
    hundreds of URLs (the function is pure; refusals are raised, never cached).
    """
    try:
        normalised = normalise_host(host)
    except InvalidUrlError as exc:
        raise InvalidInput(N_("url has an invalid host: {reason}"), reason=exc) from exc
    if isinstance(normalised, ipaddress.IPv6Address):
        return f"[{normalised}]"
    return str(normalised)


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, IDNA host, default port and fragment removed.

    Path and query are kept as they are: on most hosts they are case-sensitive, and two URLs
    that differ there may be two different pieces of content.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(N_("url is empty"))
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(
            N_("{field} is longer than {limit} characters"), field="url", limit=MAX_URL_LENGTH
        )
    url_characters(url)
    if _WHITESPACE_OR_CONTROL.search(url):
        raise InvalidInput(N_("url contains whitespace or control characters"))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(N_("url is not valid: {reason}"), reason=exc) from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidInput(N_("url must start with http:// or https://"))
    host = parts.hostname
    if not host:
        raise InvalidInput(N_("url has no host"))
    host = _idna_host(host)
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username or parts.password:
        # Credentials are not part of the content's location and must not be stored.
        raise InvalidInput(N_("url must not contain credentials"))
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def url_host(url: str) -> str:
    host = urlsplit(url).hostname
    if not host:
        raise InvalidInput(N_("url has no host"))
    return host


def endpoint_url(endpoint: str) -> str:
    """A peer's endpoint: an http(s) URL naming a host, with no credentials, query or fragment,
    and no whitespace or control character (it becomes part of request lines)."""
    if not isinstance(endpoint, str) or _WHITESPACE_OR_CONTROL.search(endpoint):
        raise InvalidInput(N_("endpoint contains whitespace or control characters"))
    url_characters(endpoint, "endpoint")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise InvalidInput(N_("endpoint is not a valid URL: {reason}"), reason=exc) from exc
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidInput(
            N_("endpoint must be an http(s) URL naming a host (got {value!r})"), value=endpoint
        )
    if parts.username is not None or parts.query or parts.fragment:
        raise InvalidInput(N_("endpoint must not carry credentials, a query or a fragment"))
    return endpoint.rstrip("/")
