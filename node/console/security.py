"""Console guards: security headers and CSP, the session cookie, CSRF on every form, roles."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.console.context import console
from node.errors import N_, Forbidden, PayloadTooLarge
from node.users import Person, Session, UserRole

SESSION_COOKIE = "hln_session"
SIGN_IN_COOKIE = "hln_sign_in"  # the sign-in form's own CSRF token, before any session exists
DEVICE_COOKIE = "hln_device"  # this browser signed in as the person before (users.device_token)
DEVICE_DAYS = 365
MAX_FORM_BYTES = 256 * 1024
SESSION_KEY = web.RequestKey("session", Session)
# No inline script or style anywhere; nothing from another origin; no framing; forms only here.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}
PUBLIC_PATHS = ("/console/sign-in", "/console/static/")
# All a person still on the password they were given may reach (see users.Person).
FIRST_PASSWORD_PATHS = ("/console/password", "/console/sign-out")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STAFF = (UserRole.ANALYST, UserRole.REVIEWER, UserRole.OPERATOR)
ANALYSTS = (UserRole.ANALYST, UserRole.REVIEWER)


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    # Secure: browsers keep Secure cookies on http://127.0.0.1 and localhost (secure contexts),
    # so the same flags serve a local node and one behind TLS.
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


def person(request: web.Request, *roles: UserRole) -> Person:
    who = session_of(request).person
    if roles and who.role not in roles:
        who.require(*roles)
    return who


def check_csrf(expected: str, form: Any) -> None:
    given = form.get("csrf", "")
    # As bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500).
    if not isinstance(given, str) or not hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    ):
        raise Forbidden(N_("the form is stale or did not come from this console: reload and retry"))


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _guarded(request, handler)
    response.headers.update(HEADERS)
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and (request.content_length or 0) > MAX_FORM_BYTES:
        raise PayloadTooLarge(N_("form too large"))
    if request.path.startswith(PUBLIC_PATHS):
        return await handler(request)
    ctx = console(request)
    session = await ctx.users.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        # After signing in again, the person is back on the page they were on: the one asked
        # for, or for a form, the page it was posted from (Referer is never sent: no-referrer).
        if request.method == "GET":
            target = request.path_qs if request.path != "/console/" else ""
        else:
            target = _page_of_form(request.path)
        raise web.HTTPSeeOther("/console/sign-in" + (f"?next={_quote(target)}" if target else ""))
    request[SESSION_KEY] = session
    if request.method == "POST":
        form = await request.post()
        check_csrf(session.csrf, form)
    if session.person.password_temporary and request.path not in FIRST_PASSWORD_PATHS:
        # The password an operator was shown sets the person's own and nothing else: whoever
        # created or reset the account cannot assess or review through it.
        if request.method == "GET":
            raise web.HTTPSeeOther("/console/password")
        raise Forbidden(N_("set your own password first: the one you were given does nothing else"))
    return await handler(request)


# A form's action and the page it is on: /console/case/REF/assess is on /console/case/REF.
_FORM_PAGES = (
    (re.compile(r"^(/console/case/[^/]+)/[^/]+$"), r"\1"),
    (re.compile(r"^/console/(users|peers|channels)/.*$"), r"/console/\1"),
    (re.compile(r"^/console/password$"), "/console/password"),
)


def _page_of_form(path: str) -> str:
    for pattern, page in _FORM_PAGES:
        if pattern.match(path):
            return pattern.sub(page, path)
    return ""


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def safe_next(value: str | None) -> str:
    """Only a path inside the console: never an open redirect elsewhere."""
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return "/console/"
