"""Operators' pages: peers, channels, people and tokens, the audit chain; and the statistics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from node.clock import iso
from node.console.charts import bars, columns
from node.console.context import console
from node.console.render import Refused, render
from node.console.security import STAFF, person
from node.console.views import _done, _text, waiting_notices
from node.errors import NodeError, StorageFull
from node.store import audit
from node.users import UserRole

OPERATOR = (UserRole.OPERATOR,)
# The fields a refused form gives back as typed (node/console/render.py, Refused).
PEER_FIELDS = ("node_id", "country", "endpoint", "fingerprint", "categories", "pull_only")
USER_FIELDS = {"add": ("name", "role", "totp"), "token": ("name", "role")}


async def peers_page(request: web.Request) -> web.Response:
    return await _render_peers(request)


async def _render_peers(
    request: web.Request, refused: Refused | None = None, status: int = 200
) -> web.Response:
    person(request, *OPERATOR)
    ctx = console(request)
    queues = await ctx.reads.peer_queues()
    now = ctx.clock.now()
    peers = []
    for row in await ctx.registry.all():
        described = await ctx.registry.describe(row.node_id)
        # Key validity in a key document is in seconds since the epoch.
        valid = [
            k
            for k in described["keys"]
            if not k["revoked"] and int(k["not_after"]) > now.timestamp()
        ]
        queue = queues.get(row.node_id, {"pending": 0, "dead": 0, "oldest": None})
        peers.append(
            {
                **described,
                "pending": queue["pending"],
                "oldest": queue["oldest"],
                "keys_valid_until": iso(
                    datetime.fromtimestamp(max(int(k["not_after"]) for k in valid), UTC)
                )
                if valid
                else None,
            }
        )
    return render(
        request, "peers.html", {"title": "Peers", "peers": peers}, status, refused=refused
    )


async def peer_form(request: web.Request) -> web.Response:
    who = person(request, *OPERATOR)
    ctx = console(request)
    node_id = request.match_info["id"]
    what = request.match_info["what"]
    if what in ("suspend", "resume"):
        await ctx.admin.set_status(
            node_id, "suspended" if what == "suspend" else "active", who.name
        )
    elif what == "requeue":
        await ctx.registry.requeue_dead(node_id, who.name)
        ctx.deliver_now([node_id])
    else:
        raise web.HTTPNotFound()
    raise _done("/console/peers", f"peer-{what}")


async def peer_add(request: web.Request) -> web.Response:
    who = person(request, *OPERATOR)
    ctx = console(request)
    form = await request.post()
    categories = _text(form, "categories")
    try:
        await ctx.admin.add(
            node_id=_text(form, "node_id") or "",
            country=(_text(form, "country") or "").upper(),
            endpoint=_text(form, "endpoint") or "",
            fingerprint=_text(form, "fingerprint") or "",
            pull_only=form.get("pull_only") == "on",
            categories=[c.strip() for c in categories.split(",")] if categories else None,
            actor=who.name,
        )
    except StorageFull:
        raise  # its own page: nothing can be written, whatever is typed
    except NodeError as exc:
        refused = Refused.of(request, "peer-add", exc, form, PEER_FIELDS)
        return await _render_peers(request, refused, exc.status)
    raise _done("/console/peers", "peer-added")


async def channels_page(request: web.Request) -> web.Response:
    person(request, *OPERATOR)
    ctx = console(request)
    counts: dict[str, dict[str, int]] = {}
    for (role, state), n in (await ctx.reads.channel_counts()).items():
        counts.setdefault(role, {})[state] = n
    return render(
        request,
        "channels.html",
        {
            "title": "Channels",
            "channels": await ctx.dispatcher.describe(),
            "roles": counts,
            "failures": await ctx.reads.channel_failures(50),
            "waiting": await waiting_notices(ctx, 50),
        },
    )


async def channel_test(request: web.Request) -> web.Response:
    person(request, *OPERATOR)
    ctx = console(request)
    form = await request.post()
    outcome = await ctx.dispatcher.test(request.match_info["name"], _text(form, "to"))
    state = "ok" if outcome.delivered else "failed"
    raise _done("/console/channels", f"channel-test-{state}")


async def channel_requeue(request: web.Request) -> web.Response:
    who = person(request, *OPERATOR)
    await console(request).dispatcher.requeue_dead(request.match_info["name"], who.name)
    raise _done("/console/channels", "channel-requeued")


async def users_page(request: web.Request) -> web.Response:
    return await _render_users(request)


async def _render_users(
    request: web.Request,
    secret: dict[str, Any] | None = None,
    refused: Refused | None = None,
    status: int = 200,
) -> web.Response:
    person(request, *OPERATOR)
    ctx = console(request)
    return render(
        request,
        "users.html",
        {
            "title": "People and tokens",
            "users": await ctx.users.list_users(),
            "tokens": await ctx.tokens.list_tokens(),
            # A new secret is shown once, on this page, and never again.
            "secret": secret,
        },
        status,
        refused=refused,
    )


async def users_form(request: web.Request) -> web.Response:
    """Add, disable, enable, change a role, reset; make or revoke a token. A refusal shows the
    page again with why, and what was typed in the form still in it."""
    person(request, *OPERATOR)
    form = await request.post()
    what = request.match_info["what"]
    try:
        secret = await _change_users(request, what, form)
    except StorageFull:
        raise  # its own page: nothing can be written, whatever is typed
    except NodeError as exc:
        refused = Refused.of(request, what, exc, form, USER_FIELDS.get(what, ()))
        return await _render_users(request, refused=refused, status=exc.status)
    if secret is None:
        raise _done("/console/users", f"user-{what}")
    return await _render_users(request, secret=secret)


async def _change_users(request: web.Request, what: str, form: Any) -> dict[str, Any] | None:
    who = person(request, *OPERATOR)
    ctx = console(request)
    secret: dict[str, Any] | None = None
    if what == "add":
        name = _text(form, "name") or ""
        made = await ctx.users.add(
            name, _text(form, "role") or "", totp=form.get("totp") == "on", actor=who.name
        )
        secret = {"name": name, **made.__dict__}
    elif what == "disable":
        await ctx.users.disable(_text(form, "name") or "", actor=who.name)
    elif what == "role":
        await ctx.users.set_role(
            _text(form, "name") or "", _text(form, "role") or "", actor=who.name
        )
    elif what == "enable":
        await ctx.users.enable(_text(form, "name") or "", actor=who.name)
    elif what == "reset":
        name = _text(form, "name") or ""
        made = await ctx.users.reset(name, totp=form.get("totp") == "on", actor=who.name)
        secret = {"name": name, **made.__dict__}
    elif what == "token":
        # A token made here belongs to the person named: the API records their name.
        token = await ctx.tokens.create(
            _text(form, "role") or "", None, actor=who.name, person=_text(form, "name") or ""
        )
        secret = {"name": _text(form, "name"), "password": token, "totp_uri": None}
    elif what == "revoke-token":
        await ctx.tokens.revoke(_text(form, "id") or "", actor=who.name)
    else:
        raise web.HTTPNotFound()
    return secret


async def audit_page(request: web.Request) -> web.Response:
    person(request, *OPERATOR)
    ctx = console(request)
    result = await audit.verify(ctx.db)
    return render(request, "audit.html", {"title": "Audit log", "result": result})


async def stats_page(request: web.Request) -> web.Response:
    person(request, *STAFF)
    ctx = console(request)
    doc = await ctx.stats()
    since = iso(ctx.clock.now() - timedelta(weeks=26))
    weeks = await ctx.reads.per_week(since)
    removal = doc["time_to_removal"]
    lag = await ctx.reads.peer_lag()

    def days(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds / 86400:.1f}"

    return render(
        request,
        "stats.html",
        {
            "title": "Statistics",
            "doc": doc,
            "removal": {
                "cases": removal.get("cases", 0),
                "median": days(removal.get("median_seconds")),
                "p90": days(removal.get("p90_seconds")),
                "within": removal.get("share_within_3_days"),
            },
            "weekly": columns([(w[5:], float(n)) for w, n in weeks], title="Reports per week"),
            "by_category": bars(
                [(k, float(v)) for k, v in doc["by_category"].items()], title="By category"
            ),
            "by_country": bars(
                [(k, float(v)) for k, v in list(doc["by_hosting_country"].items())[:15]],
                title="By hosting country",
            ),
            "lag": bars(
                [(peer, round(mean / 60, 1)) for peer, mean, _worst, _n in lag],
                title="Mean delivery lag per peer",
                unit=" min",
            ),
        },
    )
