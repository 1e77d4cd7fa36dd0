"""The public reporter's language: the one chosen, else the browser's, else the node's."""

from __future__ import annotations

from aiohttp import web

from node.api.context import context

LANGUAGES = ("fr", "en")


def language(request: web.Request, chosen: str | None = None) -> str:
    """?lang= or the form's own field, else the browser's preference, else the language of the
    node's country (French for French-speaking countries, English otherwise)."""
    if chosen in LANGUAGES:
        return chosen
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return asked
    ranked = []
    for part in request.headers.get("Accept-Language", "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        ranked.append((weight, tag.split("-")[0].lower()))
    for _, tag in sorted(ranked, reverse=True):
        if tag in LANGUAGES:
            return tag
    return context(request).form_language
