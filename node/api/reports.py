"""Analyst and public HTTP handlers: intake, listing, reading, assessment, actions, trace."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.api.bodies import json_response, read_json
from node.api.context import context, principal
from node.api.languages import language
from node.api.problems import Handler
from node.errors import Forbidden, InvalidInput, UpstreamError
from node.jurisdiction import InvalidUrlError, JurisdictionError, NoAddressError, NoSuchHostError
from node.tokens import Role
from node.urls import normalise_url
from protocol.ids import short_reference

STAFF = (Role.ANALYST, Role.OPERATOR)
# The largest valid public report: a 4,096-character URL and a 4,000-character description in a
# script of 3-byte UTF-8 characters (plus contact and JSON framing) fits; anything larger is junk.
PUBLIC_MAX_BYTES = 24 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Hashes are read by node.hashes.values.parse_hash alone (its one-line reasons): the body only
# caps how many come at once.
HashTexts = Annotated[list[Any], Field(max_length=256)]


class SubmitBody(_Body):
    url: Annotated[str, Field(max_length=4096)]
    category: str | None = None
    note: Annotated[str, Field(max_length=8192)] | None = None
    tlp: str | None = None
    hashes: HashTexts | None = None


class HashesBody(_Body):
    hashes: HashTexts


class PublicBody(_Body):
    url: Annotated[str, Field(max_length=4096)]
    description: Annotated[str, Field(min_length=1, max_length=4000)]
    contact: Annotated[str, Field(max_length=256)] | None = None
    # The reporter's language (a BCP 47 tag); else the request's (Accept-Language).
    language: Annotated[str, Field(max_length=35)] | None = None


class AssessBody(_Body):
    verdict: str
    category: str
    legal_basis: Annotated[str, Field(max_length=256)] | None = None


class ActionBody(_Body):
    code: str
    reason: Annotated[str, Field(max_length=8192)] | None = None


class OverrideBody(_Body):
    country: str
    reason: Annotated[str, Field(min_length=1, max_length=8192)]


async def submit(request: web.Request) -> web.Response:
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, SubmitBody, ctx.max_body_bytes)
    result = await ctx.cases.submit(
        body.url,
        actor=who.actor,
        category=body.category,
        note=body.note,
        tlp=body.tlp,
        hashes=body.hashes,
    )
    ctx.schedule_trace()
    return json_response(
        {"id": result.report_id, "duplicate": result.duplicate, "duplicates": result.duplicates},
        status=200 if result.duplicate else 201,
    )


PUBLIC_REPORTS = "/api/v1/public/reports"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The public intake answers the hotline's own pages, errors included (outside the problem
    middleware, so that a browser may read a 422 or 429 too)."""
    response = await handler(request)
    if request.path == PUBLIC_REPORTS:
        response.headers.update(cors_headers(request))
    return response


def cors_headers(request: web.Request) -> dict[str, str]:
    """CORS for the hotline's own origins only; others get no CORS header (browsers refuse)."""
    origin = request.headers.get("Origin", "")
    if origin.lower() not in context(request).cors_origins:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def public_preflight(request: web.Request) -> web.Response:
    """OPTIONS before a cross-origin POST from the hotline's web page."""
    headers = cors_headers(request)
    if not headers:
        raise Forbidden(
            f"origin {request.headers.get('Origin', '(none)')!r} may not post reports here;"
            " the operator lists allowed origins in [intake] cors_origins"
        )
    headers.update(
        {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
    )
    return web.Response(status=204, headers=headers)


async def public_submit(request: web.Request) -> web.Response:
    ctx = context(request)
    ctx.public_limiter.check(ctx.client(request))
    body = await read_json(request, PublicBody, PUBLIC_MAX_BYTES)
    result = await ctx.cases.submit(
        body.url,
        actor="public",
        source="public",
        description=body.description,
        contact=body.contact,
        language=body.language or language(request),
    )
    ctx.schedule_trace()
    # The public learns only that the report was received, not what the hotline holds.
    reference = short_reference(result.report_id)
    return json_response({"received": True, "reference": reference}, status=202)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    # str.isdigit() is true for "²" and other digits int() refuses: ASCII digits only.
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"limit must be a positive integer (got {raw!r})")
    return int(raw)


async def list_reports(request: web.Request) -> web.Response:
    await principal(request, *STAFF)
    items, cursor = await context(request).cases.list_page(
        status=request.query.get("status"), limit=_limit(request), after=request.query.get("after")
    )
    return json_response({"reports": items, "next": cursor})


def _as_seen_by(role: Role, case: dict[str, Any]) -> dict[str, Any]:
    """The case as this role may read it: the public's words and contacts are for analysts
    (the console shows them to analysts and reviewers, not to operators)."""
    if role is not Role.OPERATOR:
        return case
    case["submissions"] = [
        {**s, "description": None, "contact": None} for s in case.get("submissions", [])
    ]
    return case


async def show_report(request: web.Request) -> web.Response:
    who = await principal(request, *STAFF)
    cases = context(request).cases
    case = await cases.show(await cases.resolve_one(request.match_info["id"]))
    return json_response(_as_seen_by(who.role, case))


async def assess(request: web.Request) -> web.Response:
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, AssessBody, ctx.max_body_bytes)
    report_id = request.match_info["id"]
    done = await ctx.reviews.assess(
        report_id,
        verdict=body.verdict,
        category=body.category,
        legal_basis=body.legal_basis,
        actor=who.actor,
        person=who.person,
    )
    # A verdict waiting for a reviewer shows in the case's `review`, not yet in `assessment`.
    case = await ctx.cases.show(done.report_id)
    return json_response(_as_seen_by(who.role, case))


async def record_action(request: web.Request) -> web.Response:
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, ActionBody, ctx.max_body_bytes)
    action_id = await ctx.cases.record_action(
        request.match_info["id"], code=body.code, reason=body.reason, actor=who.actor
    )
    return json_response({"id": action_id}, status=201)


async def override(request: web.Request) -> web.Response:
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, OverrideBody, ctx.max_body_bytes)
    report_id = request.match_info["id"]
    await ctx.cases.override_jurisdiction(
        report_id, country=body.country, reason=body.reason, actor=who.actor
    )
    return json_response(_as_seen_by(who.role, await ctx.cases.show(report_id)))


async def trace(request: web.Request) -> web.Response:
    await principal(request, *STAFF)
    url = request.query.get("url")
    if not url:
        raise InvalidInput("query parameter url is required")
    # The same rules as intake: a URL that could not be reported is not traced either.
    normalised = normalise_url(url)
    try:
        evidence = await context(request).trace(normalised)
    except (InvalidUrlError, NoSuchHostError, NoAddressError) as exc:
        raise InvalidInput(str(exc)) from exc
    except JurisdictionError as exc:
        raise UpstreamError(str(exc)) from exc
    return json_response(evidence)


async def add_hashes(request: web.Request) -> web.Response:
    """Put hashes on an existing case (the same hash again changes nothing)."""
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, HashesBody, ctx.max_body_bytes)
    report_id = await ctx.cases.resolve_one(request.match_info["id"])
    await ctx.cases.add_hashes(report_id, body.hashes, actor=who.actor)
    return json_response(_as_seen_by(who.role, await ctx.cases.show(report_id)))


class ClearanceBody(_Body):
    reason: Annotated[str, Field(max_length=8192)] | None = None


async def clearance(request: web.Request) -> web.Response:
    """Law enforcement cleared the case: a host notice held for them may go."""
    who = await principal(request, *STAFF)
    ctx = context(request)
    body = await read_json(request, ClearanceBody, ctx.max_body_bytes)
    report_id = request.match_info["id"]
    await ctx.cases.clear_for_host(report_id, reason=body.reason, actor=who.actor)
    return json_response(_as_seen_by(who.role, await ctx.cases.show(report_id)))


def add_public_routes(app: web.Application) -> None:
    """Public intake: all of this module a public listener serves."""
    app.router.add_post(PUBLIC_REPORTS, public_submit)
    app.router.add_route("OPTIONS", PUBLIC_REPORTS, public_preflight)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/reports/{id}/clearance", clearance)
    add_public_routes(app)
    app.router.add_post("/api/v1/reports", submit)
    app.router.add_get("/api/v1/reports", list_reports)
    app.router.add_get("/api/v1/reports/{id}", show_report)
    app.router.add_post("/api/v1/reports/{id}/assessment", assess)
    app.router.add_post("/api/v1/reports/{id}/actions", record_action)
    app.router.add_post("/api/v1/reports/{id}/jurisdiction", override)
    app.router.add_post("/api/v1/reports/{id}/hashes", add_hashes)
    app.router.add_get("/api/v1/trace", trace)
