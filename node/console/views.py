"""Analysts' pages: sign-in, the triage queue, lists and search, the case page and its forms."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from node.cases import CaseStatus
from node.cases.hashes import hashes_view
from node.clock import iso, parse_iso
from node.console.context import ConsoleContext, console
from node.console.i18n import LANGUAGES
from node.console.render import Refused, banner, posted_text, render, say
from node.console.security import (
    ANALYSTS,
    DEVICE_COOKIE,
    DEVICE_DAYS,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    STAFF,
    check_csrf,
    new_sign_in_token,
    person,
    safe_next,
    session_of,
    set_cookie,
)
from node.errors import (
    N_,
    Forbidden,
    InvalidInput,
    NodeError,
    RateLimited,
    Sentence,
    StorageFull,
    Unauthorized,
)
from node.store import report_hashes
from node.store.console import Filters, make_cursor
from node.users import UserRole
from protocol.records import Category

PAGE = 50
# A date filter is a day, as the form's date field sends it (and people type it); a time of day
# or an offset would move a day's bounds, and a year past 9999 is no date.
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# The largest rowid SQLite stores: a search cursor beyond it is no cursor.
MAX_ROWID = 2**63 - 1
COUNT_CAP = 10_000
STATUSES = tuple(status.value for status in CaseStatus)
QUEUE_STATUSES = (CaseStatus.NEW.value, CaseStatus.MANUAL.value, CaseStatus.RECEIVED.value)
CATEGORIES = tuple(category.value for category in Category)
VERDICTS = ("baseline", "national", "not_illegal")
ACTION_CODES = (
    "content_removed",
    "content_unavailable",
    "moved",
    "not_illegal",
    "lea_referred",
    "notice_sent",
)


def _done(location: str, msg: str) -> web.HTTPSeeOther:
    # Only a fixed banner: render.banner shows nothing else (a programming slip, not input).
    assert banner(msg) is not None, msg
    sep = "&" if "?" in location else "?"
    return web.HTTPSeeOther(f"{location}{sep}{urlencode({'msg': msg})}")


def _text(form: Any, name: str) -> str | None:
    return posted_text(form, name) or None


# sign-in ------------------------------------------------------------------------------------
def _sign_in_form(
    request: web.Request, *, next_path: str, name: str, error: str | None, status: int
) -> web.Response:
    """The sign-in page with a fresh form token; a refused form keeps the name and the page
    the person was going to (never the password or the code: both are spent)."""
    token = new_sign_in_token()
    response = render(
        request,
        "sign_in.html",
        {"title": "Sign in", "token": token, "next": next_path, "name": name, "error": error},
        status=status,
    )
    set_cookie(response, SIGN_IN_COOKIE, token, 3600)
    return response


async def sign_in_page(request: web.Request) -> web.Response:
    return _sign_in_form(
        request, next_path=safe_next(request.query.get("next")), name="", error=None, status=200
    )


async def sign_in(request: web.Request) -> web.Response:
    ctx = console(request)
    form = await request.post()
    # Login CSRF: without the cookie this console set with the form, the post came from
    # elsewhere (another site signing the person in as someone else). Nothing stands in for
    # the cookie: a missing one is refused, whatever the form says.
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected:
        raise Forbidden(N_("the form is stale or did not come from this console: reload and retry"))
    check_csrf(expected, form)
    name = (_text(form, "name") or "").lower()[:64]
    client = ctx.client(request)
    error: Sentence | None = None
    try:
        await ctx.users.take_sign_in_attempt(name, client, request.cookies.get(DEVICE_COOKIE))
        session = await ctx.users.sign_in(
            name, str(form.get("password", "")), _text(form, "code"), client=client
        )
    except RateLimited as exc:
        error = exc.message
    except Unauthorized as exc:
        error = exc.message
    if error is not None:
        return _sign_in_form(
            request,
            next_path=safe_next(_text(form, "next")),
            name=name,
            error=say(request, error),
            status=401,
        )
    response = web.HTTPSeeOther(safe_next(_text(form, "next")))
    set_cookie(
        response, SESSION_COOKIE, session.token, int(ctx.users.session_length.total_seconds())
    )
    response.del_cookie(SIGN_IN_COOKIE, path="/console/")
    set_cookie(
        response, DEVICE_COOKIE, ctx.users.device_token(session.person.name), DEVICE_DAYS * 86400
    )
    raise response


async def sign_out(request: web.Request) -> web.Response:
    await console(request).users.sign_out(session_of(request))
    response = web.HTTPSeeOther("/console/sign-in")
    response.del_cookie(SESSION_COOKIE, path="/console/")
    raise response


async def password_page(request: web.Request) -> web.Response:
    who = session_of(request).person
    return render(
        request,
        "password.html",
        {"title": "Set your own password", "first": who.password_temporary},
    )


async def set_password(request: web.Request) -> web.Response:
    """A person sets their own password; until then the one they were given does nothing else."""
    who = session_of(request).person
    form = await request.post()
    await console(request).users.change_password(
        who.name,
        current=str(form.get("current", "")),
        new=str(form.get("new", "")),
        repeated=str(form.get("repeated", "")),
        client=console(request).client(request),
    )
    raise _done("/console/queue", "password-set")


async def choose_language(request: web.Request) -> web.Response:
    form = await request.post()
    lang = _text(form, "lang")
    if lang not in LANGUAGES:
        raise InvalidInput(N_("language must be en or fr"))
    await console(request).users.set_language(session_of(request).person.name, lang)
    raise web.HTTPSeeOther(safe_next(_text(form, "next")))


# lists ------------------------------------------------------------------------------------
def _filters(request: web.Request, statuses: tuple[str, ...]) -> Filters:
    q = request.query
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidInput(N_("status must be one of {allowed}"), allowed=", ".join(STATUSES))

    def day(name: str) -> str | None:
        value = q.get(name) or None
        if value is None:
            return None
        if not DAY.fullmatch(value):
            raise InvalidInput(N_("{field} must be a date (YYYY-MM-DD)"), field=name)
        try:
            parsed = parse_iso(value + "T00:00:00Z")
        except ValueError:
            raise InvalidInput(N_("{field} must be a date (YYYY-MM-DD)"), field=name) from None
        if name == "until":
            try:
                # The whole of the day named: received before the next one begins.
                parsed += timedelta(days=1)
            except OverflowError:
                return None  # until the last day there is: no upper bound
        return iso(parsed)

    return Filters(
        statuses=(status,) if status else statuses,
        category=q.get("category") or None,
        country=(q.get("country") or "").upper() or None,
        source=q.get("source") or None,
        origin=q.get("origin") or None,
        since=day("since"),
        until=day("until"),
    )


def _page_links(request: web.Request, rows: list[Any]) -> str | None:
    if len(rows) <= PAGE:
        return None
    query = {k: v for k, v in request.query.items() if k not in ("after", "msg")}
    query["after"] = make_cursor(rows[PAGE - 1])
    return f"{request.path}?{urlencode(query)}"


async def waiting_notices(ctx: ConsoleContext, limit: int) -> list[dict[str, Any]]:
    """Host notices not sent yet, each with when its police-first hold ends (None: not held,
    or the hold is over and it goes with the next dispatch)."""
    now = ctx.clock.now()
    notices = []
    for row in await ctx.reads.waiting_notices(limit):
        hours = ctx.dispatcher.hold_hours(row.category)
        held_until = None
        if hours and row.lea_cleared_at is None:
            until = parse_iso(row.created_at) + timedelta(hours=hours)
            held_until = iso(until) if until > now else None
        notices.append({**asdict(row), "held_until": held_until})
    return notices


async def queue(request: web.Request) -> web.Response:
    """The triage queue: what waits for a person, oldest first, with its age."""
    who = person(request, *STAFF)
    ctx = console(request)
    filters = _filters(request, QUEUE_STATUSES)
    rows = await ctx.reads.page(
        filters, after=request.query.get("after"), limit=PAGE + 1, oldest_first=True
    )
    notices = await waiting_notices(ctx, 20)
    return render(
        request,
        "queue.html",
        {
            **_case_list(request, rows, "Triage queue", "/console/queue"),
            "counts": await ctx.reads.status_counts(QUEUE_STATUSES, COUNT_CAP),
            "cap": COUNT_CAP,
            "reviews": await ctx.reviews.store.waiting(20),
            # The person's own verdicts a reviewer sent back, with the reason, until given again.
            "rejected": await ctx.reviews.store.rejected_for(who.name, 20),
            "notices": notices,
            "dead_letters": await ctx.reads.dead_letters(20),
            "channel_failures": await ctx.reads.channel_failures(20),
            "waiting_for_peer": await ctx.cases.store.waiting_for_peer(limit=20),
            # A case whose hash is on a hash list is looked at before the others.
            "known": await ctx.reads.known_cases(QUEUE_STATUSES, limit=20),
        },
    )


def _case_list(request: web.Request, rows: list[Any], title: str, action: str) -> dict[str, Any]:
    """What every page listing cases shows: one page of rows, the filters and the bulk forms."""
    return {
        "title": title,
        "rows": rows[:PAGE],
        "next_page": _page_links(request, rows),
        "filters": request.query,
        "statuses": STATUSES,
        "categories": CATEGORIES,
        "verdicts": VERDICTS,
        "codes": ACTION_CODES,
        "list_action": action,
    }


async def all_cases(request: web.Request) -> web.Response:
    person(request, *STAFF)
    ctx = console(request)
    filters = _filters(request, ())
    rows = await ctx.reads.page(
        filters, after=request.query.get("after"), limit=PAGE + 1, oldest_first=False
    )
    return render(
        request,
        "cases.html",
        _case_list(request, rows, "All cases", "/console/cases"),
    )


async def search(request: web.Request) -> web.Response:
    """A reference people quote opens its case; other words search URL, host, refs, notes."""
    person(request, *STAFF)
    ctx = console(request)
    q = (request.query.get("q") or "").strip()[:200]
    if not q:
        raise web.HTTPSeeOther("/console/queue")
    try:
        found = await ctx.cases.resolve(q)
    except NodeError:
        found = []
    if len(found) == 1 and await ctx.cases.store.get(found[0]) is not None:
        raise web.HTTPSeeOther(f"/console/case/{found[0]}")
    raw_after = request.query.get("after", "")
    after = (
        int(raw_after)
        if raw_after.isascii() and raw_after.isdigit() and len(raw_after) <= 19
        else None
    )
    if after is not None and after > MAX_ROWID:
        after = None  # no such position: from the start, as any other unreadable cursor
    rows = await ctx.reads.search(q, after=after, limit=PAGE + 1)
    next_page = (
        f"/console/search?{urlencode({'q': q, 'after': rows[PAGE - 1].rid})}"
        if len(rows) > PAGE
        else None
    )
    return render(
        request,
        "cases.html",
        {
            "title": "Search",
            "query": q,
            "rows": rows[:PAGE],
            "next_page": next_page,
            "filters": {},
            "statuses": STATUSES,
            "categories": CATEGORIES,
            "verdicts": VERDICTS,
            "codes": ACTION_CODES,
            "list_action": "/console/cases",
        },
    )


# the case page ----------------------------------------------------------------------------
# The fields each of the case page's forms sends back, kept when a change is refused.
CASE_FORM_FIELDS = {
    "assess": ("verdict", "category", "legal_basis"),
    "action": ("code", "reason"),
    "override": ("country", "reason"),
    "clear": ("reason",),
    "hashes": ("hashes",),
    "withdraw": ("reason",),
    "review": ("reason",),
}


async def case_page(request: web.Request) -> web.Response:
    person(request, *STAFF)
    ctx = console(request)
    ref = request.match_info["ref"]
    report_id = await ctx.cases.resolve_one(ref)
    if report_id != ref:
        raise web.HTTPSeeOther(f"/console/case/{report_id}")
    return await _render_case(request, report_id)


async def _render_case(
    request: web.Request,
    report_id: str,
    *,
    refused: Refused | None = None,
    status: int = 200,
) -> web.Response:
    """The case page; `refused` (a form, why, and what was typed) when a change was refused."""
    who = person(request, *STAFF)
    ctx = console(request)
    case = await ctx.cases.show(report_id)
    row = await ctx.cases.store.get(report_id)
    assert row is not None
    audit_rows = await ctx.reads.audit_for(report_id)
    return render(
        request,
        "case.html",
        {
            "title": f"Case {report_id[-8:]}",
            "case": case,
            "short": report_id[-8:],
            # Why a low-quality PDQ hash is never matched, in the person's language.
            "hashes": hashes_view(
                await report_hashes.for_report(ctx.cases.store.db, report_id),
                say=lambda sentence: say(request, sentence),
            ),
            # Every public reporter's words, for analysts and reviewers only.
            "submissions": case["submissions"] if who.role in ANALYSTS else None,
            # CaseService.show marks a host notice held for the police, with until when.
            "deliveries": case["routing"]["queued"],
            "lea_cleared_at": row.lea_cleared_at,
            "review": await ctx.reviews.pending(report_id),
            "four_eyes": ctx.reviews.needs_review,
            "audit": [{**dict(a), "details": orjson.loads(a["details"])} for a in audit_rows],
            "is_origin": case["origin"] == ctx.config.node_id,
            "categories": CATEGORIES,
            "verdicts": VERDICTS,
            "codes": ACTION_CODES,
            "may_review": who.role is UserRole.REVIEWER,
        },
        status=status,
        refused=refused,
    )


async def case_form(request: web.Request) -> web.Response:
    """One form per change: assess, act, override, clear, withdraw, review, hashes.

    A refused change shows the case page again with why, and with what was typed in the form
    still in it: nobody types a reason twice because a country code had three letters."""
    person(request, *STAFF)
    ctx = console(request)
    report_id = await ctx.cases.resolve_one(request.match_info["ref"])
    form = await request.post()
    what = request.match_info["what"]
    if what not in CASE_FORM_FIELDS:
        raise web.HTTPNotFound()
    try:
        return await _change_case(request, report_id, what, form)
    except StorageFull:
        raise  # its own page (node/console/app.py): nothing can be written, whatever is typed
    except NodeError as exc:
        refused = Refused.of(request, what, exc, form, CASE_FORM_FIELDS[what])
        return await _render_case(request, report_id, refused=refused, status=exc.status)


async def _change_case(request: web.Request, report_id: str, what: str, form: Any) -> web.Response:
    who = person(request, *STAFF)
    ctx = console(request)
    back = f"/console/case/{report_id}"
    if what == "assess":
        done = await ctx.reviews.assess(
            report_id,
            verdict=_text(form, "verdict") or "",
            category=_text(form, "category") or "",
            legal_basis=_text(form, "legal_basis"),
            actor=who.name,
            person=who.name,
        )
        raise _done(back, "review-requested" if done.pending_review else "assessed")
    if what == "action":
        await ctx.cases.record_action(
            report_id, code=_text(form, "code") or "", reason=_text(form, "reason"), actor=who.name
        )
        raise _done(back, "action-recorded")
    if what == "override":
        await ctx.cases.override_jurisdiction(
            report_id,
            country=(_text(form, "country") or "").upper(),
            reason=_text(form, "reason") or "",
            actor=who.name,
        )
        raise _done(back, "overridden")
    if what == "clear":
        await ctx.cases.clear_for_host(report_id, reason=_text(form, "reason"), actor=who.name)
        raise _done(back, "cleared")
    if what == "hashes":
        values = form.get("hashes")
        await ctx.cases.add_hashes(
            report_id, values if isinstance(values, str) else "", actor=who.name
        )
        raise _done(back, "hashes-added")
    if what == "withdraw":
        await ctx.cases.withdraw(report_id, reason=_text(form, "reason") or "", actor=who.name)
        raise _done(back, "withdrawn")
    person(request, UserRole.REVIEWER)  # what == "review"
    # The review the page showed: a verdict given again since is not decided by mistake.
    seen = _text(form, "review") or ""
    if form.get("decision") == "confirm":
        await ctx.reviews.confirm(report_id, reviewer=who.name, review_id=seen)
        raise _done(back, "review-confirmed")
    await ctx.reviews.reject(
        report_id, reviewer=who.name, reason=_text(form, "reason"), review_id=seen
    )
    raise _done(back, "review-rejected")


async def bulk(request: web.Request) -> web.Response:
    """Assess or act on the cases ticked in a list; each case is its own change and audit."""
    who = person(request, *STAFF)
    ctx = console(request)
    form = await request.post()
    ids = [v for v in form.getall("case", []) if isinstance(v, str)][:500]
    if not ids:
        raise InvalidInput(N_("tick at least one case"))
    back = safe_next(_text(form, "next"))
    failed: list[str] = []
    for report_id in ids:
        try:
            if form.get("op") == "assess":
                await ctx.reviews.assess(
                    report_id,
                    verdict=_text(form, "verdict") or "",
                    category=_text(form, "category") or "",
                    legal_basis=_text(form, "legal_basis"),
                    actor=who.name,
                    person=who.name,
                )
            else:
                await ctx.cases.record_action(
                    report_id,
                    code=_text(form, "code") or "",
                    reason=_text(form, "reason"),
                    actor=who.name,
                )
        except NodeError as exc:
            # Each refusal in the person's language already: this error is only ever shown here.
            failed.append(f"{report_id[-8:]}: {say(request, exc)}")
    if failed:
        raise InvalidInput(
            N_("{done} of {total} done; not done: {failed}"),
            done=len(ids) - len(failed),
            total=len(ids),
            failed="; ".join(failed[:10]),
        )
    raise _done(back, f"bulk-done:{len(ids)}")
