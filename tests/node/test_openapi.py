"""docs/openapi.json matches the running app: every route documented, real exchanges validate."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from node.clock import ManualClock
from protocol.httpsig import SignedRequest, sign_request
from tests.node.test_federation import report_frame, signed_push
from tests.support.dns_server import ZoneDnsServer
from tests.support.federation import LiveNode, befriend, live_node, node_dir
from tests.support.nodes import START, ApiHarness

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
BASE = "urn:hotline-node:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    BASE, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)
METHODS = {"get", "post", "put", "patch", "delete", "options"}
UNKNOWN_ID = "2f1e7c1a-5b6d-4e8f-9a0b-1c2d3e4f5a6b"


def _pointer(parts: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def locate(pointer: str) -> tuple[Any, str]:
    """The object at a JSON pointer in the spec, following OpenAPI `$ref`s (responses...)."""
    node: Any = SPEC
    for raw in pointer.strip("/").split("/"):
        node = node[raw.replace("~1", "/").replace("~0", "~")]
    while isinstance(node, dict) and set(node) == {"$ref"}:
        pointer = node["$ref"].removeprefix("#")
        node, pointer = locate(pointer)
    return node, pointer


def validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=REGISTRY)


def operation(method: str, template: str) -> tuple[dict[str, Any], str]:
    pointer = _pointer(["paths", template, method.lower()])
    node, pointer = locate(pointer)
    return node, pointer


def check_request(method: str, template: str, body: Any) -> None:
    op, pointer = operation(method, template)
    assert "requestBody" in op, f"{method} {template} documents no request body"
    validator(f"{pointer}/requestBody/content/application~1json/schema").validate(body)


def check_response(method: str, template: str, status: int, content_type: str, body: Any) -> None:
    op, pointer = operation(method, template)
    documented = op["responses"]
    assert str(status) in documented, f"{method} {template} does not document {status}"
    response, response_pointer = locate(f"{pointer}/responses/{status}")
    assert content_type in response["content"], (
        f"{method} {template} {status}: {content_type} is not documented"
    )
    media = _pointer([content_type])
    validator(f"{response_pointer}/content{media}/schema").validate(body)


@dataclass
class Exchange:
    status: int
    content_type: str
    body: Any


async def exchange(
    client: Any,
    method: str,
    template: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    params: dict[str, str] | None = None,
    check_body: bool = True,
) -> Exchange:
    """One request: its body checked against the spec, then the answer against the spec."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        if check_body:
            check_request(method, template, body)
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    response = await client.request(method, path, data=data, headers=headers, params=params)
    raw = await response.read()
    content_type = response.content_type
    parsed: Any = raw.decode() if content_type.startswith("text/") else orjson.loads(raw)
    check_response(method, template, response.status, content_type, parsed)
    return Exchange(response.status, content_type, parsed)


# the document itself -------------------------------------------------------------------------
def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def test_the_document_is_well_formed() -> None:
    assert SPEC["openapi"].startswith("3.1.")
    for name, schema in SPEC["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            pytest.fail(f"schema {name}: {exc}")
    for where, node in walk(SPEC):
        if isinstance(node, dict) and "$ref" in node:
            target = node["$ref"]
            assert target.startswith("#/"), f"{where}: external reference {target}"
            locate(target.removeprefix("#"))  # raises KeyError when it points nowhere
    ids = [op["operationId"] for item in SPEC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for template, item in SPEC["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", template))
        for method, op in item.items():
            assert method in METHODS
            declared = {
                locate(p["$ref"].removeprefix("#"))[0]["name"] if "$ref" in p else p["name"]
                for p in op.get("parameters", [])
                if (locate(p["$ref"].removeprefix("#"))[0] if "$ref" in p else p)["in"] == "path"
            }
            assert declared == names, f"{method} {template}: path parameters {declared}"
            assert op["responses"], f"{method} {template} documents no response"
            if op["security"]:
                # Every authenticated operation says how a refusal looks.
                assert "401" in op["responses"], f"{method} {template}"


def routes(app: web.Application) -> set[tuple[str, str]]:
    # aiohttp adds HEAD beside each GET; it is not a separate operation. The console's HTML
    # pages and forms (a sub-application under /console/) are for browsers, not an API.
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith("/console/")
    }


def documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item}


async def test_every_registered_route_is_documented_and_every_documented_route_exists(
    api: ApiHarness,
) -> None:
    registered = routes(api.node.make_app())
    assert registered - documented() == set(), "routes missing from docs/openapi.json"
    assert documented() - registered == set(), "documented routes the app does not serve"


# real exchanges ------------------------------------------------------------------------------
async def test_analyst_and_public_exchanges_match_the_schemas(api: ApiHarness) -> None:
    client, analyst, operator = api.client, api.analyst, api.operator
    submit = {
        "url": "http://de.example/a/b.jpg",
        "category": "csam",
        "note": "seen twice",
        "tlp": "amber",
    }
    created = await exchange(
        client, "POST", "/api/v1/reports", "/api/v1/reports", token=analyst, body=submit
    )
    assert created.status == 201
    report_id = created.body["id"]
    again = await exchange(
        client, "POST", "/api/v1/reports", "/api/v1/reports", token=analyst, body=submit
    )
    assert again.status == 200
    assert again.body["duplicate"] is True
    await api.node.trace_pending()

    listed = await exchange(
        client, "GET", "/api/v1/reports", "/api/v1/reports", token=analyst, params={"status": "new"}
    )
    assert [r["id"] for r in listed.body["reports"]] == [report_id]
    case_path = f"/api/v1/reports/{report_id}"
    shown = await exchange(client, "GET", "/api/v1/reports/{id}", case_path, token=analyst)
    assert shown.body["hosting"]["addresses"]

    assess = {"verdict": "baseline", "category": "csam", "legal_basis": "Art. 227-23"}
    assessed = await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/assessment",
        f"{case_path}/assessment",
        token=analyst,
        body=assess,
    )
    assert assessed.body["routing"]["decision"] is not None
    await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/clearance",
        f"{case_path}/clearance",
        token=analyst,
        body={"reason": "police agreed"},
    )
    action = await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/actions",
        f"{case_path}/actions",
        token=analyst,
        body={"code": "content_removed", "reason": "gone"},
    )
    assert action.status == 201
    closed = await exchange(
        client,
        "POST",
        "/api/v1/reports/{id}/jurisdiction",
        f"{case_path}/jurisdiction",
        token=analyst,
        body={"country": "NL", "reason": "host confirmed"},
    )
    assert closed.status == 409  # a closed case is not routed again

    traced = await exchange(
        client,
        "GET",
        "/api/v1/trace",
        "/api/v1/trace",
        token=analyst,
        params={"url": "http://cdn.example/x"},
    )
    assert traced.body["cdn"] is True
    stats = await exchange(client, "GET", "/api/v1/stats", "/api/v1/stats", token=operator)
    assert stats.body["reports"] == 1
    public = await exchange(
        client,
        "POST",
        "/api/v1/public/reports",
        "/api/v1/public/reports",
        body={"url": "http://fr.example/p", "description": "a forum post"},
    )
    assert public.status == 202
    again = await exchange(
        client,
        "POST",
        "/api/v1/public/reports",
        "/api/v1/public/reports",
        body={
            "url": "http://fr.example/p",
            "description": "also a video",
            "contact": "me@example.org",
            "language": "en",
        },
    )
    assert again.status == 202
    [public_case] = await api.node.cases.list_cases(status="new")
    words = await exchange(
        client,
        "GET",
        "/api/v1/reports/{id}",
        f"/api/v1/reports/{public_case['id']}",
        token=analyst,
    )
    assert [(w["description"], w["contact"]) for w in words.body["submissions"]] == [
        ("a forum post", None),
        ("also a video", "me@example.org"),
    ]
    hidden = await exchange(
        client,
        "GET",
        "/api/v1/reports/{id}",
        f"/api/v1/reports/{public_case['id']}",
        token=operator,
    )
    assert [w["contact"] for w in hidden.body["submissions"]] == [None, None]

    health = await exchange(client, "GET", "/healthz", "/healthz")
    assert health.body["status"] == "ok"
    keys = await exchange(client, "GET", "/.well-known/hotline-node", "/.well-known/hotline-node")
    assert keys.body["signature"]
    metrics = await exchange(client, "GET", "/metrics", "/metrics")
    assert "hotline_reports" in metrics.body


async def test_errors_are_documented_problems(api: ApiHarness) -> None:
    client, analyst, operator = api.client, api.analyst, api.operator
    unauthorized = await exchange(client, "GET", "/api/v1/reports", "/api/v1/reports")
    assert unauthorized.status == 401
    assert unauthorized.content_type == "application/problem+json"
    forbidden = await exchange(client, "GET", "/admin/v1/peers", "/admin/v1/peers", token=analyst)
    assert forbidden.status == 403
    missing = await exchange(
        client, "GET", "/api/v1/reports/{id}", f"/api/v1/reports/{UNKNOWN_ID}", token=analyst
    )
    assert missing.status == 404
    bad_status = await exchange(
        client,
        "GET",
        "/api/v1/reports",
        "/api/v1/reports",
        token=analyst,
        params={"status": "lost"},
    )
    assert bad_status.status == 422
    bad_period = await exchange(
        client, "GET", "/api/v1/stats", "/api/v1/stats", token=analyst, params={"since": "x"}
    )
    assert bad_period.status == 422

    # A body outside the documented schema is refused by the schema and by the node alike.
    extra = {"url": "http://de.example/z", "colour": "red"}
    with pytest.raises(ValidationError):
        check_request("POST", "/api/v1/reports", extra)
    refused = await exchange(
        client,
        "POST",
        "/api/v1/reports",
        "/api/v1/reports",
        token=analyst,
        body=extra,
        check_body=False,
    )
    assert refused.status == 422
    with pytest.raises(ValidationError):
        check_request(
            "POST", "/api/v1/reports/{id}/assessment", {"verdict": "maybe", "category": "csam"}
        )

    response = await client.post(
        "/api/v1/reports",
        data=b"{not json",
        headers={**api.auth(), "Content-Type": "application/json"},
    )
    check_response(
        "POST",
        "/api/v1/reports",
        response.status,
        response.content_type,
        await response.json(content_type=None),
    )
    assert response.status == 400
    response = await client.post(
        "/api/v1/reports", data=b"url=x", headers={**api.auth(), "Content-Type": "text/plain"}
    )
    check_response(
        "POST",
        "/api/v1/reports",
        response.status,
        response.content_type,
        await response.json(content_type=None),
    )
    assert response.status == 415

    peers = await exchange(client, "GET", "/admin/v1/peers", "/admin/v1/peers", token=operator)
    assert peers.body == {"peers": []}
    no_peer = await exchange(
        client, "GET", "/admin/v1/peers/{id}", "/admin/v1/peers/de-eco", token=operator
    )
    assert no_peer.status == 404
    unreachable = await exchange(
        client,
        "POST",
        "/admin/v1/peers",
        "/admin/v1/peers",
        token=operator,
        body={
            "node_id": "de-eco",
            "country": "DE",
            "endpoint": "http://127.0.0.1:9",
            "fingerprint": "0" * 43,
        },
    )
    assert unreachable.status == 502
    channels = await exchange(
        client, "GET", "/admin/v1/channels", "/admin/v1/channels", token=operator
    )
    assert "channels" in channels.body
    no_channel = await exchange(
        client,
        "POST",
        "/admin/v1/channels/{name}/test",
        "/admin/v1/channels/nowhere/test",
        token=operator,
        body={},
    )
    assert no_channel.status == 404

    unsigned = await exchange(
        client,
        "POST",
        "/federation/v1/transactions/{txn_id}",
        "/federation/v1/transactions/txn-unsigned-1",
        body={"envelopes": ["AAAA"]},
    )
    assert unsigned.status == 401
    unsigned_pull = await exchange(client, "GET", "/federation/v1/outbox", "/federation/v1/outbox")
    assert unsigned_pull.status == 401


# federation and peers between two live nodes -----------------------------------------------------
@dataclass
class Pair:
    fr: LiveNode
    de: LiveNode


@pytest.fixture
async def pair(
    tmp_path: Path, clock: ManualClock, dns_server: ZoneDnsServer
) -> AsyncIterator[Pair]:
    fr_dir, fr_url = node_dir(tmp_path, "fr-pdc", "FR", clock, dns_server.nameserver)
    de_dir, de_url = node_dir(tmp_path, "de-eco", "DE", clock, dns_server.nameserver)
    async with live_node(fr_dir, fr_url, clock) as fr, live_node(de_dir, de_url, clock) as de:
        # FR cannot be reached by DE's pushes: it pulls what DE has for it.
        await befriend(de, fr, pull_only=True)
        yield Pair(fr, de)


async def signed_get(
    sender: LiveNode, target_url: str, path: str, query: str, nonce: str = "nonce-pull-0123456789"
) -> tuple[int, Any]:
    request = SignedRequest("GET", target_url.removeprefix("http://"), path, f"?{query}", b"")
    headers = sign_request(
        request,
        node_id=sender.node_id,
        key=sender.node.keyring.current.current_signing(START),
        nonce=nonce,
        now=sender.node.clock.now(),
    )
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{target_url}{path}?{query}", headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_federation_and_peer_administration_match_the_schemas(pair: Pair) -> None:
    frame = report_frame(pair.fr, pair.de)
    status, answer, _, body = await signed_push(pair.fr, pair.de.url, "txn-openapi-1", [frame])
    assert status == 200, answer
    check_request("POST", "/federation/v1/transactions/{txn_id}", orjson.loads(body))
    check_response(
        "POST", "/federation/v1/transactions/{txn_id}", status, "application/json", answer
    )
    results: Any = answer["results"]
    assert [r["status"] for r in results] == ["accepted"]

    # DE acts on FR's report: the action waits in DE's outbox until FR collects it.
    held = await pair.de.node.db.fetch_one("SELECT id FROM reports WHERE origin = 'fr-pdc'")
    assert held is not None
    await pair.de.node.cases.record_action(
        held["id"], code="content_removed", reason=None, actor="analyst:bea"
    )
    status, page = await signed_get(
        pair.fr, pair.de.url, "/federation/v1/outbox", "after=0&limit=10"
    )
    assert status == 200, page
    check_response("GET", "/federation/v1/outbox", status, "application/json", page)
    assert len(page["envelopes"]) == 1

    # FR, restored from a backup, asks for its records back: its report as it signed it, and
    # DE's own actions on it (received, removed), sealed to FR.
    status, given = await signed_get(
        pair.fr, pair.de.url, "/federation/v1/recover", "after=0", nonce="nonce-recover-0123456"
    )
    assert status == 200, given
    check_response("GET", "/federation/v1/recover", status, "application/json", given)
    assert [len(given["records"]), len(given["actions"]), given["more"]] == [1, 2, False]

    async with aiohttp.ClientSession(base_url=pair.de.url) as session:
        listed = await exchange(
            session, "GET", "/admin/v1/peers", "/admin/v1/peers", token=pair.de.operator
        )
        assert [p["node_id"] for p in listed.body["peers"]] == ["fr-pdc"]
        shown = await exchange(
            session, "GET", "/admin/v1/peers/{id}", "/admin/v1/peers/fr-pdc", token=pair.de.operator
        )
        assert shown.body["keys"]
        patched = await exchange(
            session,
            "PATCH",
            "/admin/v1/peers/{id}",
            "/admin/v1/peers/fr-pdc",
            token=pair.de.operator,
            body={"categories": ["csam", "csem"], "max_tlp": "amber", "share_hashes": True},
        )
        assert patched.body["share_hashes"] is True
        assert patched.body["accepts"] == ["hashset", "pdq-quality", "sha1"]
        requeued = await exchange(
            session,
            "POST",
            "/admin/v1/peers/{id}/requeue",
            "/admin/v1/peers/fr-pdc/requeue",
            token=pair.de.operator,
        )
        assert requeued.body == {"node_id": "fr-pdc", "requeued": 0}
        for action in ("suspend", "resume"):
            await exchange(
                session,
                "POST",
                f"/admin/v1/peers/{{id}}/{action}",
                f"/admin/v1/peers/fr-pdc/{action}",
                token=pair.de.operator,
            )
        removed = await exchange(
            session,
            "DELETE",
            "/admin/v1/peers/{id}",
            "/admin/v1/peers/fr-pdc",
            token=pair.de.operator,
        )
        assert removed.body["status"] == "removed"
