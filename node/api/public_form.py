"""The public reporting form at /report: French and English, server-rendered, no JavaScript."""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import aiohttp_jinja2
import jinja2
from aiohttp import web

from node.api.bodies import read_capped
from node.api.context import context
from node.api.languages import language
from node.api.reports import PUBLIC_MAX_BYTES
from node.errors import InvalidInput, PayloadTooLarge, RateLimited, StorageFull
from node.urls import normalise_url
from protocol.ids import short_reference

# Nothing is loaded from anywhere but this node, nothing runs, nothing frames the page.
CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The honeypot: a field people never see (off screen, hidden from assistive technology, out of
# the tab order). Robots that fill every field fill it; the report is then refused.
TRAP = "website"

TEXT: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Report illegal content online",
        "intro": "Tell {hotline} where you saw content you believe is illegal: child sexual abuse"
        " material, terrorist content, hate speech. Do not send the content itself, and do not"
        " download it: the address (URL) is enough.",
        "url": "Address of the content (URL)",
        "url_hint": "For example https://example.com/page. Copy it from your browser's address"
        " bar.",
        "description": "What did you see?",
        "description_hint": "A few words about the content and where it is on the page.",
        "contact": "Your e-mail or phone number (optional)",
        "contact_hint": "Only if you agree to be contacted about this report.",
        "trap": "Leave this field empty",
        "send": "Send the report",
        "fix": "The report was not sent. Please correct:",
        "missing_url": "Give the address (URL) of the content.",
        "bad_url": "This address cannot be reported: {detail}",
        "missing_description": "Describe what you saw, in a few words.",
        "too_long": "This is too long ({limit} characters at most).",
        "trapped": "The report was not accepted: a field that must stay empty was filled in"
        " (it catches automated submissions). If you are a person, please send it again.",
        "limited": "Too many reports were sent from your connection. Please try again in"
        " {wait} seconds.",
        "full_title": "Your report could not be saved",
        "full": "Our service has run out of storage space for a while, so your report was not"
        " recorded. Please send it again later: what you typed is kept below.",
        "thanks_title": "Thank you, your report was received",
        "thanks": "Our analysts will assess it. We do not visit the address from this service"
        " and do not store the content.",
        "your_reference": "Your report's reference:",
        "keep_reference": "Keep this reference if you contact us about this report.",
        "another": "Report other content",
        "other_language": "Français",
        "privacy_title": "Your data",
        "privacy": [
            "{hotline} receives the address, your description and, if you give it, your"
            " contact. We use them only to assess the report and act on it.",
            "The case may be passed to the police, to the hosting provider (without your"
            " contact) and to the partner hotline of the country where the content is hosted.",
            "Your contact is deleted after {days} days at the latest. Your IP address is used"
            " only to limit the number of reports per connection, in memory, and never stored.",
            "This page loads nothing from any other site and sets no cookie.",
        ],
    },
    "fr": {
        "title": "Signaler un contenu illicite en ligne",
        "intro": "Indiquez à {hotline} où vous avez vu un contenu que vous pensez illicite :"
        " pédocriminalité, terrorisme, haine. N'envoyez pas le contenu lui-même et ne le"
        " téléchargez pas : l'adresse (URL) suffit.",
        "url": "Adresse du contenu (URL)",
        "url_hint": "Par exemple https://exemple.fr/page. Copiez-la depuis la barre d'adresse"
        " de votre navigateur.",
        "description": "Qu'avez-vous vu ?",
        "description_hint": "Quelques mots sur le contenu et sur l'endroit où il se trouve dans"
        " la page.",
        "contact": "Votre courriel ou numéro de téléphone (facultatif)",
        "contact_hint": "Seulement si vous acceptez d'être recontacté au sujet de ce signalement.",
        "trap": "Laissez ce champ vide",
        "send": "Envoyer le signalement",
        "fix": "Le signalement n'a pas été envoyé. Merci de corriger :",
        "missing_url": "Indiquez l'adresse (URL) du contenu.",
        "bad_url": "Cette adresse ne peut pas être signalée : {detail}",
        "missing_description": "Décrivez en quelques mots ce que vous avez vu.",
        "too_long": "Le texte est trop long ({limit} caractères au plus).",
        "trapped": "Le signalement n'a pas été accepté : un champ qui doit rester vide a été"
        " rempli (il détecte les envois automatiques). Si vous êtes une personne, merci de"
        " l'envoyer à nouveau.",
        "limited": "Trop de signalements ont été envoyés depuis votre connexion. Merci de"
        " réessayer dans {wait} secondes.",
        "full_title": "Votre signalement n'a pas pu être enregistré",
        "full": "Notre service manque momentanément d'espace de stockage : votre signalement"
        " n'a pas été enregistré. Merci de l'envoyer à nouveau plus tard : ce que vous avez"
        " saisi est conservé ci-dessous.",
        "thanks_title": "Merci, votre signalement a bien été reçu",
        "thanks": "Nos analystes vont l'examiner. Ce service ne consulte pas l'adresse et ne"
        " conserve pas le contenu.",
        "your_reference": "Référence de votre signalement :",
        "keep_reference": "Conservez cette référence si vous nous contactez à ce sujet.",
        "another": "Signaler un autre contenu",
        "other_language": "English",
        "privacy_title": "Vos données",
        "privacy": [
            "{hotline} reçoit l'adresse, votre description et, si vous l'indiquez, votre"
            " contact. Nous ne les utilisons que pour examiner le signalement et y donner suite.",
            "Le signalement peut être transmis à la police, à l'hébergeur (sans votre contact)"
            " et à la hotline partenaire du pays où le contenu est hébergé.",
            "Votre contact est effacé au plus tard après {days} jours. Votre adresse IP ne sert"
            " qu'à limiter le nombre de signalements par connexion, en mémoire, et n'est jamais"
            " conservée.",
            "Cette page ne charge rien depuis un autre site et ne dépose aucun cookie.",
        ],
    },
}


def page(
    request: web.Request,
    lang: str,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    reference: str | None = None,
    headers: dict[str, str] | None = None,
    unsaved: bool = False,
) -> web.Response:
    ctx = context(request)
    response = aiohttp_jinja2.render_template(
        "report.html",
        request,
        {
            "lang": lang,
            "other": "en" if lang == "fr" else "fr",
            "t": TEXT[lang],
            "hotline": ctx.hotline_name,
            "retention_days": ctx.retention_days,
            "values": values or {"url": "", "description": "", "contact": ""},
            "errors": errors or {},
            "reference": reference,
            "unsaved": unsaved,
        },
        status=status,
    )
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    response.headers["Content-Language"] = lang
    return response


async def show_form(request: web.Request) -> web.Response:
    return page(request, language(request))


async def submit_form(request: web.Request) -> web.Response:
    ctx = context(request)
    try:
        if request.content_length is not None and request.content_length > PUBLIC_MAX_BYTES:
            raise PayloadTooLarge(f"body is larger than {PUBLIC_MAX_BYTES} bytes")
        # Read to the end under the cap, whatever the framing: one read() returns what has
        # arrived, and a chunked body has no length to check first.
        raw = await read_capped(request, PUBLIC_MAX_BYTES)
    except PayloadTooLarge:
        lang = language(request)
        too_long = TEXT[lang]["too_long"].format(limit=4000)
        return page(request, lang, status=413, errors={"description": too_long})
    fields = {
        name: values[0]
        for name, values in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()
    }
    lang = language(request, fields.get("lang"))
    text = TEXT[lang]
    values = {name: fields.get(name, "").strip() for name in ("url", "description", "contact")}
    if fields.get(TRAP):
        return page(request, lang, status=422, values=values, errors={"url": text["trapped"]})
    errors = _check(values, text)
    if errors:
        return page(request, lang, status=422, values=values, errors=errors)
    try:
        ctx.public_limiter.check(ctx.client(request))
        result = await ctx.cases.submit(
            values["url"],
            actor="public",
            source="public",
            description=values["description"],
            contact=values["contact"] or None,
            language=lang,
        )
    except RateLimited as exc:
        return page(
            request,
            lang,
            status=429,
            values=values,
            errors={"url": text["limited"].format(wait=exc.retry_after)},
            headers={"Retry-After": str(exc.retry_after)},
        )
    except StorageFull as exc:
        # Nothing wrong with the report: the page says so, keeps what was typed, and asks
        # for it again later (the API answers the same with a 507 problem).
        return page(
            request,
            lang,
            status=exc.status,
            values=values,
            headers={"Retry-After": str(exc.retry_after)},
            unsaved=True,
        )
    except InvalidInput as exc:
        # The intake rules' own words (in English) name the field they refuse.
        field = next((f for f in ("contact", "description") if str(exc).startswith(f)), "url")
        errors = {field: text["bad_url"].format(detail=exc) if field == "url" else str(exc)}
        return page(request, lang, status=422, values=values, errors=errors)
    ctx.schedule_trace()
    return page(request, lang, status=201, reference=short_reference(result.report_id))


def _check(values: dict[str, str], text: dict[str, Any]) -> dict[str, str]:
    errors = {}
    if not values["url"]:
        errors["url"] = text["missing_url"]
    elif len(values["url"]) > 4096:
        errors["url"] = text["too_long"].format(limit=4096)
    else:
        try:
            normalise_url(values["url"])  # the intake's own rules, all errors at once
        except InvalidInput as exc:
            errors["url"] = text["bad_url"].format(detail=exc)
    if not values["description"]:
        errors["description"] = text["missing_description"]
    elif len(values["description"]) > 4000:
        errors["description"] = text["too_long"].format(limit=4000)
    if len(values["contact"]) > 256:
        errors["contact"] = text["too_long"].format(limit=256)
    return errors


async def stylesheet(request: web.Request) -> web.Response:
    css = resources.files("node.api").joinpath("static/report.css").read_bytes()
    return web.Response(
        body=css,
        content_type="text/css",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "max-age=3600"},
    )


def add_routes(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("node.api", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.router.add_get("/report", show_form)
    app.router.add_post("/report", submit_form)
    app.router.add_get("/report/report.css", stylesheet)
