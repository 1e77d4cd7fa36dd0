"""Public intake as the public meets it: behind a reverse proxy, from the hotline's own page,
and through the reporting form at /report, against a real node's HTTP server."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from node.api.clients import client_address, networks
from node.clock import ManualClock
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import ApiHarness, api_harness, init_node

ORIGIN = "https://www.pointdecontact.example"
REPORT = {"url": "http://fr.example/p", "description": "a picture of a child"}


@pytest.fixture
async def api(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> AsyncIterator[ApiHarness]:
    data_dir = init_node(
        tmp_path / "fr",
        clock=clock,
        extra={
            "jurisdiction": {"dns_server": dns_server.nameserver, "dns_timeout_seconds": 1.0},
            "intake": {
                "public_reports_per_minute": 2,
                "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"],
                "cors_origins": [ORIGIN],
            },
            "notices": {"notifier_name": "Point de Contact"},
        },
    )
    async with api_harness(data_dir, clock) as harness:
        yield harness


async def public(api: ApiHarness, headers: dict[str, str] | None = None) -> int:
    response = await api.client.post("/api/v1/public/reports", json=REPORT, headers=headers)
    return response.status


# behind a proxy --------------------------------------------------------------------------------
def test_only_a_trusted_proxy_names_the_client() -> None:
    trusted = networks(["127.0.0.1", "10.0.0.0/8", "2001:db8:f::/48"])
    xff = {"X-Forwarded-For": "198.51.100.7, 203.0.113.5, 10.1.2.3"}
    # The client wrote 198.51.100.7 itself; our proxies appended 203.0.113.5 then 10.1.2.3.
    assert client_address("127.0.0.1", xff, trusted) == "203.0.113.5"
    # From anyone else the headers are the client's own words: ignored.
    assert client_address("192.0.2.9", xff, trusted) == "192.0.2.9"
    assert client_address("127.0.0.1", xff, ()) == "127.0.0.1"
    forwarded = {"Forwarded": 'for=198.51.100.7, for="[2001:db8:cafe::17]:4711";proto=https'}
    assert client_address("10.0.0.1", forwarded, trusted) == "2001:db8:cafe::17"
    assert client_address("10.0.0.1", {"Forwarded": "for=_hidden7"}, trusted) == "_hidden7"
    assert client_address("10.0.0.1", {"X-Forwarded-For": "10.9.9.9"}, trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", {"X-Forwarded-For": "203.0.113.5:443"}, trusted) == (
        "203.0.113.5"
    )
    assert ipaddress.ip_address(client_address("::1", {}, trusted)) == ipaddress.ip_address("::1")


async def test_the_rate_limit_applies_per_real_client_behind_the_proxy(api: ApiHarness) -> None:
    alice = {"X-Forwarded-For": "203.0.113.5"}
    bob = {"X-Forwarded-For": "198.51.100.7"}
    assert [await public(api, alice) for _ in range(3)] == [202, 202, 429]
    # Bob shares the proxy with Alice, not her bucket.
    assert await public(api, bob) == 202
    # A client cannot pick a fresh bucket by writing its own header: the proxy's hop counts.
    assert await public(api, {"X-Forwarded-For": "1.2.3.4, 203.0.113.5"}) == 429


# CORS ------------------------------------------------------------------------------------------
async def test_cors_answers_the_hotlines_own_origins_only(api: ApiHarness) -> None:
    preflight = await api.client.options(
        "/api/v1/public/reports",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    refused = await api.client.options(
        "/api/v1/public/reports", headers={"Origin": "https://evil.example"}
    )
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    posted = await api.client.post(
        "/api/v1/public/reports", json=REPORT, headers={"Origin": ORIGIN}
    )
    assert posted.status == 202
    assert posted.headers["Access-Control-Allow-Origin"] == ORIGIN
    # Errors too, so that the page can tell the citizen what went wrong.
    bad = await api.client.post(
        "/api/v1/public/reports", json={"url": "nope"}, headers={"Origin": ORIGIN}
    )
    assert bad.status == 422
    assert bad.headers["Access-Control-Allow-Origin"] == ORIGIN
    # The analysts' API never answers another origin.
    other = await api.client.get("/api/v1/reports", headers={**api.auth(), "Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in other.headers


# the form --------------------------------------------------------------------------------------
class Page(HTMLParser):
    """What a test needs from a page: tags with their attributes, labels, visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


async def get_page(api: ApiHarness, path: str, **headers: str) -> tuple[Any, Page]:
    response = await api.client.get(path, headers=headers)
    return response, Page(await response.text())


async def test_the_form_is_french_and_english_accessible_and_self_contained(
    api: ApiHarness,
) -> None:
    response, page = await get_page(api, "/report", **{"Accept-Language": "fr-FR,fr;q=0.9"})
    assert response.status == 200
    assert response.headers["Content-Language"] == "fr"
    assert page.all("html")[0]["lang"] == "fr"
    assert "Signaler un contenu illicite en ligne" in page.text
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp  # nothing runs: the form needs no JavaScript
    assert page.all("script") == []
    # Nothing from outside the node.
    for attrs in page.all("link") + page.all("a") + page.all("form"):
        target = attrs.get("href") or attrs.get("action") or ""
        assert target.startswith("/"), target
    # Every field a person fills has a label; the honeypot is hidden from people and readers.
    labels = {attrs["for"] for attrs in page.all("label")}
    fields = [a for a in page.all("input") + page.all("textarea") if a.get("type") != "hidden"]
    assert {a["id"] for a in fields} <= labels
    trap = next(a for a in fields if a["name"] == "website")
    assert trap["tabindex"] == "-1"
    assert "Vos données" in page.text
    css = await api.client.get("/report/report.css")
    assert css.status == 200
    assert css.content_type == "text/css"
    english, page = await get_page(api, "/report?lang=en", **{"Accept-Language": "fr"})
    assert english.headers["Content-Language"] == "en"
    assert "Report illegal content online" in page.text
    assert "Your data" in page.text


async def test_the_form_confirms_with_the_public_reference(api: ApiHarness) -> None:
    response = await api.client.post(
        "/report",
        data={**REPORT, "contact": "citizen@example.org", "lang": "en", "website": ""},
    )
    assert response.status == 201
    page = Page(await response.text())
    reference = page.text[page.text.index("Your report's reference:") + 1]
    assert re.fullmatch(r"[0-9a-f]{8}", reference)
    [report_id] = await api.node.cases.resolve(reference)
    case = await api.node.cases.show(report_id)
    assert (case["url"], case["source"]) == (REPORT["url"], "public")
    # When the citizen calls, the analyst looks the case up by that reference.
    by_reference = await api.client.get(f"/api/v1/reports/{reference}", headers=api.auth())
    assert by_reference.status == 200
    assert (await by_reference.json())["id"] == report_id


async def test_the_form_explains_what_to_fix_and_keeps_what_was_typed(api: ApiHarness) -> None:
    response = await api.client.post(
        "/report",
        data={"url": "ftp://fr.example/x", "description": "", "contact": "<script>", "lang": "fr"},
    )
    assert response.status == 422
    html = await response.text()
    assert "<script>" not in html  # what was typed comes back escaped
    assert 'value="&lt;script&gt;"' in html
    page = Page(html)
    url = next(a for a in page.all("input") if a.get("id") == "url")
    assert url["aria-invalid"] == "true"
    assert url["value"] == "ftp://fr.example/x"
    assert "Décrivez en quelques mots ce que vous avez vu." in page.text
    assert (await api.node.db.fetch_one("SELECT COUNT(*) FROM reports"))[0] == 0  # type: ignore[index]


async def test_the_honeypot_and_the_rate_limit_stop_robots(api: ApiHarness) -> None:
    robot = await api.client.post("/report", data={**REPORT, "website": "http://spam.example"})
    assert robot.status == 422
    assert "automated" in await robot.text() or "automatiques" in await robot.text()
    assert (await api.node.db.fetch_one("SELECT COUNT(*) FROM reports"))[0] == 0  # type: ignore[index]
    statuses = [
        (await api.client.post("/report", data={**REPORT, "lang": "en"})).status for _ in range(3)
    ]
    assert statuses == [201, 201, 429]
    limited = await api.client.post("/report", data={**REPORT, "lang": "en"})
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many reports" in await limited.text()


async def test_without_a_preference_the_form_speaks_the_nodes_language(api: ApiHarness) -> None:
    response, page = await get_page(api, "/report", **{"Accept-Language": "de-DE"})
    assert response.headers["Content-Language"] == "fr"  # a French node
    assert page.all("html")[0]["lang"] == "fr"
