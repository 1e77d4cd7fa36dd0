"""A refusal in the person's language: the console renders a domain error's template through the
catalogue, while the API's problem+json and the command line keep the English text."""

from __future__ import annotations

import asyncio
import html
import sys

import pytest

from keys.document import node_id_problem
from node.cases import CaseStatus
from node.cases.lifecycle import CaseEvent, CaseStateError
from node.console.i18n import translations
from node.errors import N_, Conflict, InvalidInput, NodeError, Sentence
from node.federation.registry import check_node_id
from tests.console.conftest import Browser, Console

VALID_FINGERPRINT = "A" * 43


def _page(text: str) -> str:
    """The page's text as a person reads it, quotes unescaped; the catalogue's typographic
    apostrophe read as a plain one, to keep the expected phrases simple to type."""
    return html.unescape(text).replace("\u2019", "'")


async def _withdrawn_case(console: Console) -> str:
    submitted = await console.node.cases.submit("https://fr.example/w.jpg", actor="test")
    await console.node.cases.withdraw(submitted.report_id, reason="sent in error", actor="test")
    return submitted.report_id


def test_str_is_the_english_text_and_render_translates() -> None:
    error = CaseStateError("1234", CaseStatus.WITHDRAWN, CaseEvent.ASSESSMENT)
    assert str(error) == "report 1234 is withdrawn: it cannot be assessed"
    french = {
        "report {report} is {status}: it cannot be {event}": "le dossier {report} est {status}",
        "withdrawn": "retiré",
    }
    assert error.message.render(lambda text: french.get(text, text)) == "le dossier 1234 est retiré"
    # A translation with a parameter the template lacks falls back to the English.
    broken = {"report {report} is {status}: it cannot be {event}": "{nope}"}
    assert error.message.render(lambda text: broken.get(text, text)) == str(error)
    # Conversions and format specs work as in the f-strings they replace; a nested sentence
    # and a nested error are rendered in the same language; free text is shown as given.
    nested = Conflict(
        N_("{value!r:.5} then {code:04X}: {inner}; {error}"),
        value="abcdefgh",
        code=10,
        inner=Sentence(N_("none configured")),
        error=Conflict(N_("form too large")),
    )
    assert str(nested) == "'abcd then 000A: none configured; form too large"
    catalogue = {
        "{value!r:.5} then {code:04X}: {inner}; {error}": (
            "{value!r:.5} puis {code:04X} : {inner} ; {error}"
        ),
        "none configured": "aucun configuré",
        "form too large": "formulaire trop volumineux",
    }
    assert nested.message.render(lambda text: catalogue.get(text, text)) == (
        "'abcd puis 000A : aucun configuré ; formulaire trop volumineux"
    )
    # A plain message (not marked) still works, untranslated, braces and all; an empty one
    # stays empty (gettext("") would be the catalogue's header).
    assert str(NodeError("as {given}")) == "as {given}"
    assert NodeError("").message.render(translations("fr").gettext) == ""


async def test_a_refused_action_speaks_french_then_english(french_console: Console) -> None:
    report_id = await _withdrawn_case(french_console)
    alice = await french_console.browser("alice")
    form = {"verdict": "national", "category": "hate"}
    response, text = await alice.post(f"/console/case/{report_id}/assess", form)
    assert response.status == 409
    assert '<html lang="fr">' in text
    assert f"le signalement {report_id} est retiré : il ne peut pas être qualifié" in _page(text)
    assert "it cannot be" not in text
    # The same person chooses English: the same refusal, in English.
    await alice.post("/console/language", {"lang": "en", "next": "/console/queue"})
    await alice.get("/console/queue")
    response, text = await alice.post(f"/console/case/{report_id}/assess", form)
    assert response.status == 409
    assert f"report {report_id} is withdrawn: it cannot be assessed" in _page(text)


async def test_an_english_console_shows_the_english_text(console: Console) -> None:
    report_id = await _withdrawn_case(console)
    alice = await console.browser("alice")
    response, text = await alice.post(
        f"/console/case/{report_id}/action", {"code": "content_removed"}
    )
    assert response.status == 409
    assert f"report {report_id} is withdrawn: it cannot be closed" in _page(text)
    response, text = await alice.get("/console/cases?status=bogus")
    assert response.status == 422
    assert "status must be one of new, assessed" in text


async def test_the_api_and_the_command_line_stay_english(french_console: Console) -> None:
    report_id = await _withdrawn_case(french_console)
    english = f"report {report_id} is withdrawn: it cannot be assessed"
    token = await french_console.node.tokens.create("analyst", "api", actor="test")
    response = await french_console.client.post(
        f"/api/v1/reports/{report_id}/assessment",
        json={"verdict": "national", "category": "hate"},
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "fr"},
    )
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    assert (await response.json())["detail"] == english
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node",
        "reports",
        "assess",
        report_id,
        "--verdict",
        "national",
        "--category",
        "hate",
        "--data-dir",
        str(french_console.node.data_dir.root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    assert process.returncode != 0
    assert err.decode() == f"hotline-node: error: {english}\n"


async def test_filters_and_search_refusals_in_french(french_console: Console) -> None:
    alice = await french_console.browser("alice")
    response, text = await alice.get("/console/cases?status=bogus")
    assert response.status == 422
    assert "le statut doit être l'un de : new, assessed" in _page(text)
    response, text = await alice.get("/console/queue?since=yesterday")
    assert response.status == 422
    assert "le champ since doit être une date (AAAA-MM-JJ)" in _page(text)
    response, text = await alice.get("/console/case/NOSUCHREF")
    assert response.status == 404
    assert "aucun signalement d'identifiant 'NOSUCHREF'" in _page(text)
    response, text = await alice.post("/console/bulk", {"op": "assess"})
    assert response.status == 422
    assert "cochez au moins un dossier" in _page(text)


async def test_a_bulk_refusal_lists_each_case_in_french(french_console: Console) -> None:
    withdrawn = await _withdrawn_case(french_console)
    fresh = (
        await french_console.node.cases.submit("https://fr.example/f.jpg", actor="t")
    ).report_id
    alice = await french_console.browser("alice")
    response, text = await alice.post(
        "/console/bulk",
        [
            ("case", withdrawn),
            ("case", fresh),
            ("op", "assess"),
            ("verdict", "national"),
            ("category", "hate"),
            ("next", "/console/queue"),
        ],
    )
    assert response.status == 422
    assert (
        f"1 sur 2 faits ; non faits : {withdrawn[-8:]}: le signalement {withdrawn} est retiré"
        in _page(text)
    )


async def test_sign_in_refusals_in_french(french_console: Console) -> None:
    browser = Browser(french_console.client)
    await browser.get("/console/sign-in")
    response, text = await browser.post(
        "/console/sign-in", {"name": "alice", "password": "wrong", "code": "000000"}
    )
    assert response.status == 401
    assert "nom, mot de passe ou code à usage unique incorrect" in _page(text)
    password, _secret = french_console.secrets["alice"]
    response, text = await browser.post(
        "/console/sign-in", {"name": "alice", "password": password, "code": "000000"}
    )
    assert response.status == 401
    assert "nom, mot de passe ou code à usage unique incorrect" in _page(text)
    # A form posted without its token: refused, and said in French.
    response, text = await Browser(french_console.client).post(
        "/console/sign-in", {"name": "alice", "password": "x", "csrf": "forged"}, csrf=False
    )
    assert response.status == 403
    assert "le formulaire est périmé ou ne vient pas de cette console" in _page(text)
    seen = []
    for _ in range(11):
        await browser.get("/console/sign-in")
        _response, text = await browser.post(
            "/console/sign-in", {"name": "alice", "password": "wrong", "code": "1"}
        )
        seen.append("trop de tentatives de connexion ; réessayez dans" in _page(text))
    assert seen[-1]
    # The audit log keeps the English reason, whatever the page said.
    rows = await french_console.node.db.fetch_all(
        "SELECT details FROM audit_log WHERE event = 'user.sign_in_refused' ORDER BY seq"
    )
    assert '"reason":"wrong password"' in rows[0]["details"]


async def test_roles_and_peer_actions_refused_in_french(french_console: Console) -> None:
    alice = await french_console.browser("alice")
    response, text = await alice.get("/console/peers")
    assert response.status == 403
    # Both roles are vocabulary: translated too.
    assert "il faut le rôle opérateur ; alice est analyste" in _page(text)
    olga = await french_console.browser("olga")
    response, text = await olga.post("/console/peers/nosuch/suspend", {})
    assert response.status == 404
    assert "aucun pair 'nosuch'" in _page(text)
    response, text = await olga.post(
        "/console/peers/add",
        {
            "node_id": "de-eco",
            "country": "XX",
            "endpoint": "http://127.0.0.1:9",
            "fingerprint": VALID_FINGERPRINT,
        },
    )
    assert response.status == 422
    # The country's problem is a sentence of its own, in French too.
    assert "pays : doit être un code ISO 3166-1 alpha-2 : 'XX' n'est pas un pays attribué" in (
        _page(text)
    )
    response, text = await olga.post(
        "/console/peers/add",
        {
            "node_id": "de-eco",
            "country": "DE",
            "endpoint": "http://127.0.0.1:9",
            "fingerprint": "x",
        },
    )
    assert response.status == 422
    assert "reçu : 1 caractère(s)" in _page(text)
    response, text = await olga.post("/console/channels/nosuch/requeue", {})
    assert response.status == 404
    assert "aucun canal 'nosuch' (canaux : hosts, pharos)" in _page(text)
    response, text = await olga.post("/console/users/disable", {"name": "nobody"})
    assert response.status == 404
    assert "aucun utilisateur nommé 'nobody'" in _page(text)


def test_the_registry_says_the_node_id_rule_in_the_words_of_keys() -> None:
    for value in ("-x", "Upper", "a" * 64, ""):
        with pytest.raises(InvalidInput) as refused:
            check_node_id(value)
        assert str(refused.value) == node_id_problem(value)
