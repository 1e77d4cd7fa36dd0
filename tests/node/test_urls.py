"""URL normalisation: the key that joins duplicates, and the host the trace will look up."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import InvalidInput
from node.jurisdiction import host_from_url
from node.urls import MAX_URL_LENGTH, normalise_url, url_host

NORMALISED = [
    # scheme and host case
    ("HTTP://Example.COM/a", "http://example.com/a"),
    ("HtTpS://EXAMPLE.com/a", "https://example.com/a"),
    # default ports go, others stay
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("http://example.com:/a", "http://example.com/a"),
    # fragment removed, query kept
    ("http://example.com/a#frag", "http://example.com/a"),
    ("http://example.com/a?x=1#frag", "http://example.com/a?x=1"),
    # path and query case preserved: they may name different content
    (
        "http://example.com/Gallery/IMG_01.JPG?Id=AbC",
        "http://example.com/Gallery/IMG_01.JPG?Id=AbC",
    ),
    ("http://example.com/a/../b/./c", "http://example.com/a/../b/./c"),
    ("http://example.com/%7Euser", "http://example.com/%7Euser"),
    # empty path
    ("http://example.com", "http://example.com/"),
    ("http://example.com?q=1", "http://example.com/?q=1"),
    ("http://example.com#top", "http://example.com/"),
    # the final dot of a name
    ("http://example.com./a", "http://example.com/a"),
    # surrounding whitespace is not part of the URL
    ("  http://example.com/a\n", "http://example.com/a"),
    # IDNA: U-labels become A-labels, IDNA 2008 like browsers
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("http://BÜCHER.example/", "http://xn--bcher-kva.example/"),
    ("http://straße.de/", "http://xn--strae-oqa.de/"),  # IDNA 2003 said strasse.de
    ("http://xn--bcher-kva.example/", "http://xn--bcher-kva.example/"),
    ("http://пример.рф/путь", "http://xn--e1afmkfd.xn--p1ai/путь"),
    # IP literals: IPv6 in brackets, compressed and lower-case
    ("http://[2001:DB8::1]/a", "http://[2001:db8::1]/a"),
    ("http://[2001:db8:0:0:0:0:0:1]:8080/a", "http://[2001:db8::1]:8080/a"),
    ("http://[::FFFF:192.0.2.1]/", "http://[::ffff:c000:201]/"),
    ("http://192.0.2.1:80/a", "http://192.0.2.1/a"),
    # numeric hosts browsers read as IPv4 addresses
    ("http://3221225985/", "http://192.0.2.1/"),
    ("http://0xC0.0.2.1/", "http://192.0.2.1/"),
    # percent-encoded host characters
    ("http://%65xample.com/", "http://example.com/"),
    # an empty user part is no credential
    ("http://@example.com/a", "http://example.com/a"),
]


@pytest.mark.parametrize(("url", "expected"), NORMALISED)
def test_normalise(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(("url", "_"), NORMALISED)
def test_normalising_twice_changes_nothing(url: str, _: str) -> None:
    once = normalise_url(url)
    assert normalise_url(once) == once


@pytest.mark.parametrize(("url", "_"), NORMALISED)
def test_the_trace_reads_the_host_of_the_normalised_url(url: str, _: str) -> None:
    """The stored URL and the trace agree on the host (the trace is what reaches DNS)."""
    normalised = normalise_url(url)
    assert str(host_from_url(normalised)) == url_host(normalised)
    assert str(host_from_url(url)) == url_host(normalised)


REFUSED = [
    ("", "url is empty"),
    ("   ", "url is empty"),
    ("example.com/a", "http:// or https://"),
    ("//example.com/a", "http:// or https://"),
    ("ftp://example.com/a", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("data:text/html,x", "http:// or https://"),
    ("http://user:pass@example.com/a", "credentials"),
    ("http://user@example.com/a", "credentials"),
    ("https://:pass@example.com/a", "credentials"),
    ("http://exa mple.com/a", "whitespace"),
    ("http://example.com/a b", "whitespace"),
    ("http://example.com/a\tb", "whitespace"),
    ("http://example.com/a\nb", "whitespace"),
    ("http://example.com/a\u00a0b", "whitespace"),
    ("http://example.com/a\x00b", "control"),
    ("http:///a", "no host"),
    ("http://:80/a", "no host"),
    ("http:/example.com/a", "no host"),
    ("http://example.com:99999/a", "Port out of range"),
    ("http://example.com:port/a", "url is not valid"),
    ("http://[2001:db8::1/a", "url is not valid"),
    ("http://[not-an-ip]/a", "not valid"),
    ("http://a..example/", "invalid host"),
    ("http://-a.example/", "invalid host"),
    ("http://" + "a" * 64 + ".example/", "invalid host"),
    ("http://a.example\\b.example/", "invalid host"),
    ("http://256.1.1.1/", "invalid"),
]


@pytest.mark.parametrize(("url", "detail"), REFUSED)
def test_refused(url: str, detail: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_url(url)
    assert detail in str(refused.value)


def test_length_limit() -> None:
    head = "http://example.com/"
    exact = head + "a" * (MAX_URL_LENGTH - len(head))
    assert normalise_url(exact) == exact
    with pytest.raises(InvalidInput, match="longer than 4096 characters"):
        normalise_url(exact + "a")


def test_not_a_string() -> None:
    with pytest.raises(InvalidInput, match="url is empty"):
        normalise_url(None)  # type: ignore[arg-type]


def test_url_host() -> None:
    assert url_host("http://xn--bcher-kva.example:8080/a") == "xn--bcher-kva.example"
    assert url_host("http://[2001:db8::1]/a") == "2001:db8::1"
    with pytest.raises(InvalidInput, match="no host"):
        url_host("http:///a")


LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)


@given(
    scheme=st.sampled_from(["http", "HTTP", "https", "Https"]),
    labels=st.lists(LABEL, min_size=1, max_size=3),
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    path=st.text(alphabet="abcXYZ019/-_.~%", max_size=20),
    query=st.one_of(st.none(), st.text(alphabet="abcXYZ=&", max_size=10)),
    fragment=st.one_of(st.none(), st.text(alphabet="abc", max_size=5)),
)
def test_normalised_urls_are_stable_and_keep_path_and_query(
    scheme: str,
    labels: list[str],
    port: int | None,
    path: str,
    query: str | None,
    fragment: str | None,
) -> None:
    host = ".".join(labels).upper() + ".example"
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}/{path}"
    url += "" if query is None else f"?{query}"
    url += "" if fragment is None else f"#{fragment}"
    normalised = normalise_url(url)
    parts = urlsplit(normalised)
    assert normalise_url(normalised) == normalised
    assert parts.scheme == scheme.lower()
    assert parts.hostname == host.lower()
    assert parts.path == f"/{path}"
    assert parts.query == (query or "")
    assert parts.fragment == ""
    default = 80 if parts.scheme == "http" else 443
    assert parts.port == (None if port in (None, default) else port)
