"""The console over real HTTP on 127.0.0.1: sign-in, guards, queue, search, case page, review."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pyotp

from tests.console.conftest import Browser, Console
from tests.support.nodes import START

REVIEW_ID = re.compile(r'name="review" value="([0-9a-f]+)"')


async def _submit(console: Console, url: str, **kw: str | None) -> str:
    result = await console.node.cases.submit(url, actor="test", **kw)  # type: ignore[arg-type]
    return result.report_id


async def test_pages_need_a_session_and_carry_strict_headers(console: Console) -> None:
    browser = await console.browser("alice")
    anonymous = type(browser)(console.client)
    response, _ = await anonymous.get("/console/queue")
    assert response.status == 303
    assert response.headers["Location"].startswith("/console/sign-in")
    response, text = await browser.get("/console/queue")
    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert "<script>" not in text
    assert " style=" not in text
    assert re.search(r'<script src="/console/static/console.js"', text)


async def test_sign_in_cookie_flags_totp_and_audit(console: Console) -> None:
    browser = Browser(console.client)
    await browser.get("/console/sign-in")
    password, secret = console.secrets["alice"]
    # Right password, no code: refused (TOTP is mandatory on this node), and audited.
    response, text = await browser.post(
        "/console/sign-in", {"name": "alice", "password": password, "code": ""}
    )
    assert response.status == 401
    assert "wrong name, password or one-time code" in text
    # Wrong password: the same answer for a known or unknown name (test_lockout: for every
    # factor).
    response, text = await browser.post(
        "/console/sign-in", {"name": "nobody", "password": "x", "code": "000000"}
    )
    assert response.status == 401
    assert "wrong name, password or one-time code" in text
    await browser.get("/console/sign-in")
    assert secret is not None
    code = pyotp.TOTP(secret).at(console.clock.now())
    response, _ = await browser.post(
        "/console/sign-in", {"name": "alice", "password": password, "code": code}
    )
    assert response.status == 303
    cookie = next(h for h in response.headers.getall("Set-Cookie") if h.startswith("hln_session="))
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    rows = await console.node.db.fetch_all(
        "SELECT actor, event, details FROM audit_log WHERE event LIKE 'user.sign%' ORDER BY seq"
    )
    assert [(r["actor"], r["event"]) for r in rows] == [
        ("alice", "user.sign_in_refused"),
        ("unknown", "user.sign_in_refused"),
        ("alice", "user.signed_in"),
    ]


async def test_sign_in_is_rate_limited(console: Console) -> None:
    browser = Browser(console.client)
    statuses = []
    for _ in range(12):
        await browser.get("/console/sign-in")
        _response, text = await browser.post(
            "/console/sign-in", {"name": "alice", "password": "wrong", "code": "1"}
        )
        statuses.append("too many sign-in attempts" in text)
    assert statuses[:10] == [False] * 10
    assert statuses[10:] == [True, True]


async def test_forms_without_the_csrf_token_are_refused(console: Console) -> None:
    browser = await console.browser("alice")
    report_id = await _submit(console, "https://fr.example/a.jpg")
    response, _text = await browser.post(
        f"/console/case/{report_id}/action", {"code": "moved"}, csrf=False
    )
    assert response.status == 403
    # A token with characters beyond ASCII is a wrong token too, not an internal error.
    response, _text = await browser.post(
        f"/console/case/{report_id}/action", {"code": "moved", "csrf": "jeton-été"}, csrf=False
    )
    assert response.status == 403
    assert (await console.node.cases.show(report_id))["actions"] == []
    # Nor can the sign-in form be posted from elsewhere (no matching sign-in cookie).
    anonymous = type(browser)(console.client)
    response, _ = await anonymous.post(
        "/console/sign-in", {"name": "alice", "password": "x", "csrf": "forged"}, csrf=False
    )
    assert response.status == 403


async def test_sessions_expire_and_end_when_disabled(console: Console) -> None:
    browser = await console.browser("alice")
    assert (await browser.get("/console/queue"))[0].status == 200
    console.clock.advance(timedelta(minutes=481))
    assert (await browser.get("/console/queue"))[0].status == 303
    console.clock.set(START)
    browser = await console.browser("alice")
    await console.node.users.disable("alice", actor="olga")
    assert (await browser.get("/console/queue"))[0].status == 303


async def test_queue_is_oldest_first_with_age_and_pages_on(console: Console) -> None:
    ids = []
    for n in range(55):
        ids.append(await _submit(console, f"https://fr.example/q/{n}.jpg"))
        console.clock.advance(timedelta(minutes=1))
    browser = await console.browser("alice")
    _, text = await browser.get("/console/queue")
    shown = re.findall(r'<a href="/console/case/([0-9a-f-]{36})" data-open>', text)
    assert shown == ids[:50]
    assert "55 min" in text  # the oldest case's age
    nxt = re.search(r'<a href="([^"]+)" rel="next">', text)
    assert nxt is not None
    _, text = await browser.get(nxt.group(1).replace("&amp;", "&"))
    assert re.findall(r'<a href="/console/case/([0-9a-f-]{36})" data-open>', text) == ids[50:]


async def test_every_kind_of_reference_opens_its_case(console: Console) -> None:
    report_id = await _submit(console, "https://files.example.net/x/y.jpg", note="seen on forum")
    case = await console.node.cases.show(report_id)
    browser = await console.browser("alice")
    for ref in (report_id, report_id[-8:], report_id[-8:].upper(), case["local_ref"]):
        response, _ = await browser.get(f"/console/search?q={ref}")
        assert response.status == 303, ref
        assert response.headers["Location"] == f"/console/case/{report_id}"
        response, _ = await browser.get(f"/console/case/{ref}")
        assert response.status in (200, 303)
    # Words: the host, a part of the URL, the notes (full-text search).
    other = await _submit(console, "https://other.example.org/z.jpg")
    for words in ("files.example.net", "x/y", "forum"):
        _, text = await browser.get(f"/console/search?q={words}")
        assert report_id in text, words
        assert other not in text, words


async def test_case_page_shows_the_url_never_as_a_link(console: Console) -> None:
    result = await console.node.cases.submit(
        "https://fr.example/evil.jpg",
        actor="public",
        source="public",
        description="a child in a picture",
        contact="me@example.org",
    )
    analyst = await console.browser("alice")
    _, text = await analyst.get(f"/console/case/{result.report_id}")
    assert 'href="https://fr.example/evil.jpg"' not in text
    assert 'value="https://fr.example/evil.jpg"' in text
    assert "readonly" in text
    assert "a child in a picture" in text
    assert "me@example.org" in text
    operator = await console.browser("olga")
    _, text = await operator.get(f"/console/case/{result.report_id}")
    assert "a child in a picture" not in text
    assert "me@example.org" not in text


async def test_four_eyes_review_from_the_console(console: Console) -> None:
    report_id = await _submit(console, "https://fr.example/c.jpg")
    await console.node.trace_pending()
    alice = await console.browser("alice")
    response, _ = await alice.post(
        f"/console/case/{report_id}/assess",
        {"verdict": "baseline", "category": "csam", "legal_basis": "Art. 227-23"},
    )
    assert response.status == 303
    assert "review-requested" in response.headers["Location"]
    case = await console.node.cases.show(report_id)
    assert case["status"] == "new"
    assert case["routing"]["decision"] is None
    # The analyst cannot confirm her own verdict (not a reviewer).
    response, _ = await alice.post(f"/console/case/{report_id}/review", {"decision": "confirm"})
    assert response.status == 403
    rene = await console.browser("rene")
    _, text = await rene.get("/console/queue")
    assert report_id[-8:] in text  # listed under verdicts awaiting a reviewer
    _, text = await rene.get(f"/console/case/{report_id}")
    seen = REVIEW_ID.search(text)
    assert seen is not None
    response, _ = await rene.post(
        f"/console/case/{report_id}/review", {"decision": "confirm", "review": seen.group(1)}
    )
    assert response.status == 303
    case = await console.node.cases.show(report_id)
    assert case["status"] == "routed"
    rows = await console.node.db.fetch_all(
        "SELECT actor, event, details FROM audit_log WHERE subject = ? ORDER BY seq", (report_id,)
    )
    events = {r["event"]: r for r in rows}
    assert events["review.requested"]["actor"] == "alice"
    assert events["report.assessed"]["actor"] == "alice (confirmed by rene)"
    assert events["review.confirmed"]["actor"] == "rene"


async def test_bulk_assess_and_act(console: Console) -> None:
    ids = [await _submit(console, f"https://fr.example/b/{n}") for n in range(3)]
    await console.node.trace_pending()
    alice = await console.browser("alice")
    response, _ = await alice.post(
        "/console/bulk",
        [("case", i) for i in ids]
        + [
            ("op", "assess"),
            ("verdict", "national"),
            ("category", "hate"),
            ("next", "/console/queue"),
        ],
    )
    assert response.status == 303
    for report_id in ids:
        case = await console.node.cases.show(report_id)
        assert case["assessment"]["verdict"] == "national"
    response, _ = await alice.post(
        "/console/bulk",
        [("case", i) for i in ids[:2]] + [("op", "action"), ("code", "content_removed")],
    )
    assert response.status == 303
    assert [(await console.node.cases.show(i))["status"] for i in ids] == [
        "closed",
        "closed",
        (await console.node.cases.show(ids[2]))["status"],
    ]


async def test_operator_pages_and_roles(console: Console) -> None:
    alice = await console.browser("alice")
    response, _ = await alice.get("/console/peers")
    assert response.status == 403
    olga = await console.browser("olga")
    for page in (
        "/console/peers",
        "/console/channels",
        "/console/users",
        "/console/audit",
        "/console/stats",
    ):
        response, text = await olga.get(page)
        assert response.status == 200, page
    _, text = await olga.get("/console/audit")
    head = re.search(r"<code>([0-9a-f]{64})</code>", text)
    assert head is not None
    response, text = await olga.post("/console/users/add", {"name": "nina", "role": "analyst"})
    assert response.status == 200
    assert "nina" in text
    users = {u["name"]: u for u in await console.node.users.list_users()}
    assert users["nina"]["role"] == "analyst"


async def test_full_text_index_follows_the_notes_purge(console: Console) -> None:
    report_id = await _submit(console, "https://fr.example/p.jpg", note="secret words")
    assert [
        r.id
        for r in await console.node.console_context().reads.search(
            "secret words", after=None, limit=5
        )
    ] == [report_id]
    with sqlite3.connect(console.node.data_dir.database) as db:
        db.execute("UPDATE reports SET notes = NULL WHERE id = ?", (report_id,))
    assert await console.node.console_context().reads.search("secret", after=None, limit=5) == []


async def test_the_api_pages_without_a_cap_and_opens_any_reference(console: Console) -> None:
    token = await console.node.tokens.create("analyst", "script")
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    for n in range(5):
        ids.append(await _submit(console, f"https://fr.example/api/{n}"))
        console.clock.advance(timedelta(seconds=1))
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        response = await console.client.get("/api/v1/reports", params=params, headers=headers)
        assert response.status == 200
        body = await response.json()
        seen += [r["id"] for r in body["reports"]]
        after = body["next"]
        if after is None:
            break
    assert seen == list(reversed(ids))
    case = await console.node.cases.show(ids[0])
    for ref in (ids[0][-8:], case["local_ref"]):
        response = await console.client.get(f"/api/v1/reports/{ref}", headers=headers)
        assert response.status == 200
        assert (await response.json())["id"] == ids[0]


async def test_a_held_host_notice_shows_until_when_and_charts_are_svg(console: Console) -> None:
    report_id = await _submit(console, "https://fr.example/held.jpg")
    await console.node.trace_pending()
    # A national csam verdict waits for a reviewer; routed once rene confirms it.
    done = await console.node.reviews.assess(
        report_id,
        verdict="national",
        category="csam",
        legal_basis=None,
        actor="alice",
        person="alice",
    )
    assert done.pending_review
    review = await console.node.reviews.pending(report_id)
    assert review is not None
    await console.node.reviews.confirm(report_id, reviewer="rene", review_id=review["id"])
    case = await console.node.cases.show(report_id)
    assert case["routing"]["decision"] == "domestic"
    alice = await console.browser("alice")
    _, text = await alice.get(f"/console/case/{report_id}")
    held_until = "2026-11-30T09:00:00Z"  # queued at START, plus the 24 hours of the hold
    assert f"held for law enforcement until {held_until}" in text
    _, text = await alice.get("/console/queue")
    assert f"held for law enforcement until {held_until}" in text
    # The operator's Channels page tells held notices from those merely waiting.
    olga = await console.browser("olga")
    _, text = await olga.get("/console/channels")
    assert "held for law enforcement: 1 · pending: 0" in text
    assert f"held for law enforcement until {held_until}" in text
    _, text = await alice.get("/console/stats")
    assert text.count('<svg class="chart"') >= 3
    assert 'aria-label="By category"' in text
    # Once the hold is over, the notice is no longer shown as held (a new session: a day on).
    console.clock.advance(timedelta(hours=25))
    olga = await console.browser("olga")
    _, text = await olga.get("/console/channels")
    assert "held for law enforcement: 0 · pending: 1" in text


async def test_an_operator_requeues_a_channels_dead_deliveries(console: Console) -> None:
    report_id = await _submit(console, "https://fr.example/dead.jpg")
    await console.node.trace_pending()
    await console.node.reviews.assess(
        report_id,
        verdict="national",
        category="hate",
        legal_basis=None,
        actor="alice",
        person="alice",
    )
    # What the dispatcher leaves when a channel refuses for good (see test_channels).
    with sqlite3.connect(console.node.data_dir.database) as db:
        died = db.execute(
            "UPDATE channel_outbox SET state = 'dead', attempts = 5, last_error = 'refused',"
            " sent_via = 'pharos' WHERE report_id = ? AND role = 'law_enforcement'",
            (report_id,),
        ).rowcount
    assert died == 1
    olga = await console.browser("olga")
    _, text = await olga.get("/console/channels")
    assert 'action="/console/channels/pharos/requeue"' in text
    response, _ = await olga.post("/console/channels/pharos/requeue", {})
    assert response.status == 303
    rows = await console.node.db.fetch_all(
        "SELECT state, attempts, last_error FROM channel_outbox WHERE report_id = ? AND"
        " role = 'law_enforcement'",
        (report_id,),
    )
    assert [tuple(r) for r in rows] == [("pending", 0, None)]
    audited = await console.node.db.fetch_one(
        "SELECT actor, details FROM audit_log WHERE event = 'channel.requeued'"
    )
    assert audited is not None
    assert audited["actor"] == "olga"
    response, _ = await olga.post("/console/channels/nowhere/requeue", {})
    assert response.status == 404


async def _two_voices(served: Console) -> str:
    """Two members of the public report one URL, through the API and then the form."""
    url = "https://fr.example/two-voices.jpg"
    sent = await served.client.post(
        "/api/v1/public/reports",
        json={"url": url, "description": "a picture of a child", "contact": "one@example.org"},
        headers={"Accept-Language": "en"},
    )
    assert sent.status == 202
    sent = await served.client.post(
        "/report",
        data={"url": url, "description": "there is also a video", "contact": "+33 6 12 34 56 78"},
        headers={"Accept-Language": "fr"},
    )
    assert sent.status == 201
    [case] = await served.node.cases.list_cases(status=None, limit=10)
    assert case["duplicates"] == 1
    return str(case["id"])


async def test_every_public_reporters_words_are_on_the_case_page_in_order(
    console: Console,
) -> None:
    """Analysts and reviewers read both, first to last, with when and in which language;
    operators neither."""
    report_id = await _two_voices(console)
    for name in ("alice", "rene"):
        reader = await console.browser(name)
        _, text = await reader.get(f"/console/case/{report_id}")
        assert "Public reports of this URL" in text
        first, second = text.index("a picture of a child"), text.index("there is also a video")
        assert first < second, name
        assert "one@example.org" in text
        assert "+33 6 12 34 56 78" in text
        assert "Language:</strong> en" in text
        assert "Language:</strong> fr" in text
    operator = await console.browser("olga")
    _, text = await operator.get(f"/console/case/{report_id}")
    assert "there is also a video" not in text
    assert "one@example.org" not in text


async def test_the_reporters_words_under_french_labels(french_console: Console) -> None:
    report_id = await _two_voices(french_console)
    alice = await french_console.browser("alice")
    _, text = await alice.get(f"/console/case/{report_id}")
    assert "Signalements du public pour cette URL" in text
    assert "Signalé le" in text
    assert text.index("a picture of a child") < text.index("there is also a video")


async def test_a_console_reason_with_a_bidi_control_is_refused_as_everywhere(
    console: Console,
) -> None:
    submitted = await console.node.cases.submit("https://fr.example/rlo.jpg", actor="test")
    alice = await console.browser("alice")
    response, text = await alice.post(
        f"/console/case/{submitted.report_id}/action",
        {"code": "content_removed", "reason": "gone: abc\u202egpj.exe"},
    )
    assert response.status == 422
    assert (
        "reason contains a bidirectional control character (U+202E), which makes text display"
        " in another order than it is written" in text
    )
    assert (await console.node.cases.show(submitted.report_id))["actions"] == []


async def test_a_refused_form_shows_why_and_keeps_what_was_typed(console: Console) -> None:
    """The case page comes back with the refusal and every field of the refused form as typed;
    the other forms stay empty, and nothing changed on the case."""
    report_id = await _submit(console, "https://fr.example/typed.jpg")
    alice = await console.browser("alice")
    reason = 'hosted on a reseller\'s range, see the "abuse" answer <2026-12-07>'
    response, text = await alice.post(
        f"/console/case/{report_id}/override", {"country": "FRA", "reason": reason}
    )
    assert response.status == 422
    assert 'role="alert" id="refused"' in text
    assert "What you typed is still in its form." in text
    assert 'id="o-country" name="country" size="3" maxlength="2" required value="FRA"' in text
    escaped = reason.replace("'", "&#39;").replace('"', "&#34;").replace("<", "&lt;")
    assert f'id="o-reason" name="reason" required value="{escaped.replace(">", "&gt;")}"' in text
    assert 'id="w-reason" name="reason" required value=""' in text  # another form: empty
    assert (await console.node.cases.show(report_id))["hosting"]["override"] is None

    response, text = await alice.post(
        f"/console/case/{report_id}/hashes", {"hashes": "sha256:abc md5:nothex"}
    )
    assert response.status == 422
    assert ">sha256:abc md5:nothex</textarea>" in text
    response, text = await alice.post(
        f"/console/case/{report_id}/assess",
        {"verdict": "national", "category": "no-such", "legal_basis": "art. 227-23"},
    )
    assert response.status == 422
    assert '<option value="national" selected>' in text
    assert 'name="legal_basis" maxlength="256" value="art. 227-23"' in text
    # A change that goes through shows no refusal, and the forms start empty again.
    response, text = await alice.post(
        f"/console/case/{report_id}/action", {"code": "content_removed", "reason": "gone"}
    )
    assert response.status == 303
    _, text = await alice.get(response.headers["Location"])
    assert 'id="refused"' not in text
    assert 'id="x-reason" name="reason" value=""' in text


async def test_a_refused_form_says_so_in_french(french_console: Console) -> None:
    report_id = (
        await french_console.node.cases.submit("https://fr.example/saisi.jpg", actor="test")
    ).report_id
    alice = await french_console.browser("alice")
    response, text = await alice.post(
        f"/console/case/{report_id}/withdraw", {"reason": "doublon \u202e"}
    )
    assert response.status == 422
    assert "Non effectué" in text
    assert "Ce que vous avez saisi est resté dans le formulaire." in text
    assert 'id="w-reason" name="reason" required value="doublon' in text


async def test_refused_operator_forms_keep_what_was_typed(console: Console) -> None:
    """Adding a peer or a person, or making a token: a refusal shows the page again with why,
    and the refused form as typed (a fingerprint copied from a call is not copied twice)."""
    olga = await console.browser("olga")
    typed = {
        "node_id": "be-childfocus",
        "country": "be",
        "endpoint": "not a url",
        "fingerprint": "ab12cd34",
        "categories": "csam, hate",
        "pull_only": "on",
    }
    response, text = await olga.post("/console/peers/add", typed)
    assert response.status == 422, text
    assert 'role="alert" id="refused"' in text
    for field in ("be-childfocus", "not a url", "ab12cd34", "csam, hate"):
        assert f'value="{field}"' in text
    assert 'value="be"' in text  # as typed; upper-cased only when it is used
    assert 'name="pull_only" checked' in text
    assert await console.node.registry.all() == []

    response, text = await olga.post(
        "/console/users/add", {"name": "Not A Name!", "role": "reviewer", "totp": "on"}
    )
    assert response.status == 422, text
    assert 'id="u-name" name="name" required value="Not A Name!"' in text
    assert '<option value="reviewer" selected>' in text
    assert 'name="totp" checked' in text
    response, text = await olga.post("/console/users/token", {"name": "nobody", "role": "operator"})
    assert response.status == 404, text  # a token is held by a person of this node
    assert 'id="t-name" name="name" required value="nobody"' in text
    assert 'id="t-role" name="role"><option value="analyst">' in text
    assert '<option value="operator" selected>' in text
    # A refusal with nothing typed (the last operator) is on the same page, said the same way.
    response, text = await olga.post("/console/users/disable", {"name": "olga"})
    assert response.status == 409
    assert 'role="alert" id="refused"' in text
    assert "olga is the last active operator" in text
    assert "<h1>People and tokens</h1>" in text
