"""Rendering a console page: the template environment, the person's language, ages and times."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.clock import parse_iso
from node.console.context import console
from node.console.i18n import LANGUAGES, default_language, translations
from node.console.security import SESSION_KEY
from node.errors import NodeError, Sentence

TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
# What a banner may say after a change (`?msg=KEY` or `?msg=KEY:COUNT`): each key is a msgid of
# the catalogue. Anything else in `msg` shows no banner: a link someone sends must not make the
# console display their words ("call this number", "your session expired, sign in here").
BANNERS = frozenset(
    {
        "password-set",
        "review-requested",
        "assessed",
        "action-recorded",
        "overridden",
        "cleared",
        "hashes-added",
        "withdrawn",
        "review-confirmed",
        "review-rejected",
        "bulk-done",
        "peer-suspend",
        "peer-resume",
        "peer-requeue",
        "peer-added",
        "channel-test-ok",
        "channel-test-failed",
        "channel-requeued",
        "user-disable",
        "user-enable",
        "user-role",
        "user-revoke-token",
    }
)
TEMPLATE_DIR = Path(__file__).parent / "templates"


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        app_key=TEMPLATES,
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        default_helpers=False,
    )
    env.filters["short"] = lambda value: str(value)[-8:] if value else ""


def language(request: web.Request) -> str:
    session = request.get(SESSION_KEY)
    if session is not None and session.person.language in LANGUAGES:
        return str(session.person.language)
    ctx = console(request)
    return default_language(ctx.config.country, ctx.config.console.language)


def say(request: web.Request, said: NodeError | Sentence) -> str:
    """A domain error's message (or a sentence) in the person's language, through the catalogue."""
    sentence = said.message if isinstance(said, NodeError) else said
    return sentence.render(translations(language(request)).gettext)


def age(at: str | None, now: datetime) -> str:
    """How long ago, in the largest whole unit: 3 d, 5 h, 12 min."""
    if not at:
        return ""
    try:
        delta = now - parse_iso(at)
    except ValueError:
        return ""
    if delta < timedelta(minutes=1):
        return "<1 min"
    if delta < timedelta(hours=1):
        return f"{delta.seconds // 60} min"
    if delta < timedelta(days=1):
        return f"{delta.seconds // 3600} h"
    return f"{delta.days} d"


def banner(msg: str) -> tuple[str, str] | None:
    """The fixed message a `msg` names and its count (digits only), or None."""
    key, _, count = msg.partition(":")
    if key not in BANNERS or (count and not (count.isascii() and count.isdigit())):
        return None
    return key, count


@dataclass(frozen=True)
class Refused:
    """A form's change that was refused: the page shows why, and the form what was typed."""

    form: str
    detail: str
    typed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, request: web.Request, form: str, error: NodeError, posted: Any, fields: Iterable[str]
    ) -> Refused:
        typed = {name: posted_text(posted, name) for name in fields}
        return cls(form, say(request, error), typed)


def posted_text(posted: Any, name: str) -> str:
    """A form field as typed, without surrounding blanks; "" when absent or not text."""
    value = posted.get(name)
    return value.strip() if isinstance(value, str) else ""


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    refused: Refused | None = None,
) -> web.Response:
    """A page in the person's language; with `refused`, the refusal above it and, in every
    field of the refused form (`typed(FORM, FIELD)` in templates), what was typed."""
    ctx = console(request)
    lang = language(request)
    gettext = translations(lang).gettext
    session = request.get(SESSION_KEY)
    now = ctx.clock.now()
    base = {
        "_": gettext,
        "lang": lang,
        "node_id": ctx.config.node_id,
        "country": ctx.config.country,
        "person": session.person if session else None,
        "csrf": session.csrf if session else "",
        "age": lambda at: age(at, now),
        "path": request.path,
        "banner": banner(request.query.get("msg", "")),
        "refused": refused,
        "typed": lambda form, name: (
            refused.typed.get(name, "") if refused is not None and refused.form == form else ""
        ),
    }
    return aiohttp_jinja2.render_template(
        template, request, {**base, **context}, app_key=TEMPLATES, status=status
    )
