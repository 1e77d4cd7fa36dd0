"""The console tried as an attacker would (issue 26, item 4): each attack found, reproduced over
real HTTP on 127.0.0.1 against a real node and its SQLite, and refused."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pyotp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from node.app import open_node
from node.clock import ManualClock
from node.datadir import DataDir
from node.errors import Conflict
from node.secretbox import SealedSecretError, is_sealed
from tests.console.conftest import Browser, Console, serving
from tests.support.nodes import rewrite_config

REFUSED = "wrong name, password or one-time code"


async def _refusals(console: Console) -> list[dict[str, Any]]:
    rows = await console.node.db.fetch_all(
        "SELECT actor, event, subject, details FROM audit_log"
        " WHERE event = 'user.sign_in_refused' ORDER BY seq"
    )
    return [dict(row) for row in rows]


async def _try(browser: Browser, name: str, password: str, code: str) -> tuple[int, str]:
    await browser.get("/console/sign-in")
    response, text = await browser.post(
        "/console/sign-in", {"name": name, "password": password, "code": code}
    )
    return response.status, text


# 1. the attacks found --------------------------------------------------------------------------
async def test_login_csrf_a_sign_in_without_its_cookie_is_refused(console: Console) -> None:
    """Another site could post the sign-in form with `csrf=-` and sign a person's browser in
    as the attacker (whose console then collects what the person types)."""
    password, secret = console.secrets["alice"]
    assert secret is not None
    anonymous = Browser(console.client)
    response, text = await anonymous.post(
        "/console/sign-in",
        {
            "name": "alice",
            "password": password,
            "code": pyotp.TOTP(secret).at(console.clock.now()),
            "csrf": "-",
        },
        csrf=False,
    )
    assert response.status == 403
    assert "did not come from this console" in text
    assert "hln_session" not in anonymous.cookies
    assert (
        await console.node.db.fetch_all("SELECT 1 FROM audit_log WHERE event LIKE 'user.sign%'")
        == []
    )


async def test_the_last_day_there_is_is_a_filter_not_an_error(console: Console) -> None:
    browser = await console.browser("alice")
    for path in ("/console/cases", "/console/queue"):
        response, _ = await browser.get(f"{path}?until=9999-12-31")
        assert response.status == 200
        response, text = await browser.get(f"{path}?since=9999-12-31&until=2026-02-30")
        assert response.status == 422
        assert "until must be a date (YYYY-MM-DD)" in text


QUERY_VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[0-9]{1,6}-[0-9]{1,3}-[0-9]{1,3}(T[0-9:+Z-]{0,12})?", fullmatch=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["9999-12-31", "0001-01-01", "0000-00-00", "", "|", "a|b", "*", '"']),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/console/queue", "/console/cases", "/console/search"]),
    query=st.dictionaries(
        st.sampled_from(
            ["since", "until", "after", "status", "category", "country", "source", "origin", "q"]
        ),
        QUERY_VALUES,
        max_size=4,
    ),
)
@example(path="/console/cases", query={"until": "9999-12-31"})
@example(path="/console/queue", query={"since": "0001-01-01", "until": "0000-00-00"})
@example(path="/console/search", query={"q": "photo", "after": str(2**64)})
async def test_no_filter_value_answers_500(
    console: Console, path: str, query: dict[str, str]
) -> None:
    """Every date, number and word filter of the lists: a clear refusal or a list, never 500."""
    browser = await console.browser("alice")
    response = await console.client.get(
        path, params=query, headers=browser._header(), allow_redirects=False
    )
    assert response.status < 500, (path, query, await response.text())


async def test_a_banner_says_only_a_fixed_message(console: Console) -> None:
    browser = await console.browser("alice")
    _response, text = await browser.get(
        "/console/queue?msg=Your+session+expired:+call+0800+123+456"
    )
    assert "call 0800" not in text
    assert 'class="flash"' not in text
    _response, text = await browser.get("/console/queue?msg=bulk-done:evil")
    assert "evil" not in text
    _response, text = await browser.get("/console/queue?msg=bulk-done:3")
    assert "Done: done for the cases ticked (3)" in text


async def test_a_totp_code_is_accepted_once(console: Console) -> None:
    password, secret = console.secrets["alice"]
    assert secret is not None
    code = pyotp.TOTP(secret).at(console.clock.now())
    status, _ = await _try(Browser(console.client), "alice", password, code)
    assert status == 303
    # Seen over a shoulder, or read off the wire before TLS: the same code again, at once or
    # a minute later (it was valid for about 90 s), is refused as any wrong code is.
    status, text = await _try(Browser(console.client), "alice", password, code)
    assert (status, REFUSED in text) == (401, True)
    console.clock.advance(timedelta(seconds=29))
    status, text = await _try(Browser(console.client), "alice", password, code)
    assert (status, REFUSED in text) == (401, True)
    # An earlier code than the one used is refused too; the next one works.
    console.clock.advance(timedelta(seconds=31))
    status, _ = await _try(
        Browser(console.client), "alice", password, pyotp.TOTP(secret).at(console.clock.now())
    )
    assert status == 303
    assert [r["details"] for r in await _refusals(console)] == [
        '{"reason":"code replayed"}',
        '{"reason":"code replayed"}',
    ]


async def test_a_refused_stranger_leaves_neither_what_they_typed_nor_their_address(
    console: Console,
) -> None:
    browser = Browser(console.client)
    status, _ = await _try(browser, "Tr0ub4dor&3-my-password", "x", "000000")
    assert status == 401
    status, _ = await _try(browser, "tr0ub4dor&3-my-password", "y", "000000")
    rows = await console.node.db.fetch_all("SELECT actor, subject, details FROM audit_log")
    dump = repr([dict(row) for row in rows])
    assert "tr0ub4dor" not in dump.lower()
    assert "127.0.0.1" not in dump
    refused = await _refusals(console)
    assert [(r["actor"], r["subject"]) for r in refused] == [("unknown", "unknown user")] * 2
    # The same typed name gives the same keyed hash: repeated tries can be told apart.
    assert refused[0]["details"] == refused[1]["details"]
    assert "name_hash" in refused[0]["details"]
    # Nor does the limits table keep the address or the name.
    with sqlite3.connect(console.node.data_dir.database) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM sign_in_limits")]
    assert keys
    assert not any("127.0.0.1" in key or "tr0ub4dor" in key for key in keys)


@pytest.fixture
async def behind_a_proxy(data_dir: DataDir, clock: ManualClock) -> AsyncIterator[Console]:
    # The test client is the proxy: 127.0.0.1 forwards for the addresses its header names.
    rewrite_config(data_dir, intake={"trusted_proxies": ["127.0.0.1/32"]})
    async with serving(data_dir, clock) as served:
        yield served


async def test_sign_in_limits_are_keyed_on_the_client_behind_a_trusted_proxy(
    behind_a_proxy: Console,
) -> None:
    console = behind_a_proxy

    async def attempt(forwarded_for: str, name: str) -> str:
        browser = Browser(console.client)
        await browser.get("/console/sign-in")
        response = await console.client.post(
            "/console/sign-in",
            data={"name": name, "password": "wrong", "code": "1", "csrf": browser.csrf},
            headers={**browser._header(), "X-Forwarded-For": forwarded_for},
            allow_redirects=False,
        )
        return await response.text()

    # One attacker spends their allowance (on many names, so only the address limit bites)...
    said = [await attempt("203.0.113.7", f"guess{n}") for n in range(11)]
    assert ["too many sign-in attempts" in text for text in said] == [False] * 10 + [True]
    # ...and a colleague behind the same proxy still signs in.
    password, secret = console.secrets["olga"]
    assert secret is not None
    browser = Browser(console.client)
    await browser.get("/console/sign-in")
    response = await console.client.post(
        "/console/sign-in",
        data={
            "name": "olga",
            "password": password,
            "code": pyotp.TOTP(secret).at(console.clock.now()),
            "csrf": browser.csrf,
        },
        headers={**browser._header(), "X-Forwarded-For": "198.51.100.20"},
        allow_redirects=False,
    )
    assert response.status == 303


async def test_a_stranger_spending_a_names_allowance_cannot_lock_its_person_out(
    behind_a_proxy: Console,
) -> None:
    """The name's bucket slows guessing one account from many addresses; the browser the
    person signed in with before keeps a bucket of its own (OWASP's device cookie)."""
    console = behind_a_proxy
    password, secret = console.secrets["olga"]
    assert secret is not None

    async def attempt(browser: Browser, forwarded_for: str, name: str, pw: str) -> tuple[int, str]:
        await browser.get("/console/sign-in")
        response = await console.client.post(
            "/console/sign-in",
            data={
                "name": name,
                "password": pw,
                "code": pyotp.TOTP(secret).at(console.clock.now()),
                "csrf": browser.csrf,
            },
            headers={**browser._header(), "X-Forwarded-For": forwarded_for},
            allow_redirects=False,
        )
        browser._keep(response)
        return response.status, await response.text()

    olgas = Browser(console.client)
    assert (await attempt(olgas, "198.51.100.20", "olga", password))[0] == 303
    assert "hln_device" in olgas.cookies
    console.clock.advance(timedelta(seconds=31))  # a new TOTP step: a code counts once

    # A stranger tries olga's name from eleven addresses: the name's allowance is spent.
    said = [
        (await attempt(Browser(console.client), f"203.0.113.{n}", "olga", "wrong"))[1]
        for n in range(11)
    ]
    assert ["too many sign-in attempts" in text for text in said] == [False] * 10 + [True]
    # A browser olga never signed in with waits like the stranger...
    status, text = await attempt(Browser(console.client), "198.51.100.21", "olga", password)
    assert (status, "too many sign-in attempts" in text) == (401, True)
    # ...and so does one showing a device cookie not made for olga (altered, or another's).
    forged = Browser(console.client, cookies={"hln_device": olgas.cookies["hln_device"] + "x"})
    status, text = await attempt(forged, "198.51.100.22", "olga", password)
    assert (status, "too many sign-in attempts" in text) == (401, True)
    garbled = Browser(console.client, cookies={"hln_device": "nonce.\u00e9t\u00e9"})
    status, text = await attempt(garbled, "198.51.100.23", "olga", password)
    assert (status, "too many sign-in attempts" in text) == (401, True)
    # The browser olga signed in with before signs her in.
    status, text = await attempt(olgas, "198.51.100.20", "olga", password)
    assert status == 303, text


async def test_totp_guessing_is_slowed_and_alerted_on(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """A known password once allowed 10 guesses a minute for ever, unnoticed."""
    password, secret = console.secrets["alice"]
    assert secret is not None
    right = pyotp.TOTP(secret)

    async def guess(code: str) -> int:
        # A minute apart: past both sign-in limits (address and name), so that only the code
        # guessing itself can slow this attacker.
        console.clock.advance(timedelta(minutes=1))
        status, _ = await _try(Browser(console.client), "alice", password, code)
        return status

    async def right_code() -> int:
        status, text = await _try(
            Browser(console.client), "alice", password, right.at(console.clock.now())
        )
        assert status == 303 or REFUSED in text
        return status

    with caplog.at_level(logging.WARNING, logger="hotline.users"):
        for _ in range(5):
            assert await guess("x") == 401
        assert "wrong one-time codes" not in caplog.text  # five mistypes are no attack
        assert await guess("x") == 401
    assert "6 wrong one-time codes for alice after a right password" in caplog.text
    alerts = await console.node.db.fetch_all(
        "SELECT subject FROM audit_log WHERE event = 'user.totp_guessing'"
    )
    assert [a["subject"] for a in alerts] == ["alice"]
    # Now even the right code is refused until the wait (one minute) is over, and reads as
    # any refusal; the waits double with each further wrong code.
    console.clock.advance(timedelta(seconds=30))
    assert await right_code() == 401
    console.clock.advance(timedelta(seconds=31))
    assert await guess("x") == 401  # the 7th: two minutes
    console.clock.advance(timedelta(seconds=90))
    assert await right_code() == 401
    console.clock.advance(timedelta(seconds=31))
    assert await right_code() == 303


# 2. the fixes listed ---------------------------------------------------------------------------
async def test_the_last_active_operator_cannot_be_disabled_by_any_path(console: Console) -> None:
    olga = await console.browser("olga")
    response, text = await olga.post("/console/users/disable", {"name": "olga"})
    assert response.status == 409
    assert "olga is the last active operator" in text
    response, text = await olga.post("/console/users/role", {"name": "olga", "role": "analyst"})
    assert response.status == 409
    assert "olga is the last active operator" in text
    with pytest.raises(Conflict):
        await console.node.users.disable("olga", actor="cli")
    with pytest.raises(Conflict):
        await console.node.users.set_role("olga", "reviewer", actor="cli")
    # With a second operator, one of them may go; then the other is the last again.
    await console.node.users.add("omar", "operator", totp=False, actor="olga")
    response, _ = await olga.post("/console/users/disable", {"name": "omar"})
    assert response.status == 303
    assert "Done: person disabled" in (await olga.get(response.headers["Location"]))[1]
    with pytest.raises(Conflict):
        await console.node.users.disable("olga", actor="cli")
    with pytest.raises(Conflict):
        await console.node.users.set_role("olga", "analyst", actor="cli")
    # Once omar is enabled again, olga may become a reviewer; her sessions end.
    await console.node.users.enable("omar", actor="olga")
    response, _ = await olga.post("/console/users/role", {"name": "olga", "role": "reviewer"})
    assert response.status == 303
    assert (await olga.get("/console/queue"))[0].status == 303  # to the sign-in page
    [row] = await console.node.db.fetch_all(
        "SELECT details FROM audit_log WHERE event = 'user.role_changed'"
    )
    assert row["details"] == '{"from":"operator","sessions_ended":1,"to":"reviewer"}'
    # Analysts are disabled as before.
    await console.node.users.disable("alice", actor="omar")


async def test_resetting_a_person_does_not_enable_them(console: Console) -> None:
    users = console.node.users
    await users.disable("alice", actor="olga")
    made = await users.reset("alice", totp=False, actor="olga")
    assert made.totp_secret is not None
    [alice] = [u for u in await users.list_users() if u["name"] == "alice"]
    assert alice["state"] == "disabled"
    status, text = await _try(
        Browser(console.client),
        "alice",
        made.password,
        pyotp.TOTP(made.totp_secret).at(console.clock.now()),
    )
    assert (status, "account disabled" in text) == (401, True)
    # Enabling is its own decision, from the console (or `users enable`).
    olga = await console.browser("olga")
    response, _ = await olga.post("/console/users/enable", {"name": "alice"})
    assert response.status == 303
    [alice] = [u for u in await users.list_users() if u["name"] == "alice"]
    assert alice["state"] == "active"


async def test_refusals_read_the_same_whichever_factor_was_wrong(console: Console) -> None:
    password, secret = console.secrets["alice"]
    assert secret is not None
    said = []
    for name, typed, code in (
        ("nobody", "x", "123456"),  # unknown name
        ("alice", "wrong", pyotp.TOTP(secret).at(console.clock.now())),  # wrong password
        ("alice", password, ""),  # right password, no code
        ("alice", password, "000000"),  # right password, wrong code
    ):
        status, text = await _try(Browser(console.client), name, typed, code)
        assert status == 401
        said.append(text.split('role="alert">')[1].split("<")[0])
    assert said == [REFUSED] * 4
    # The operator still reads which one it was.
    assert [r["details"] for r in await _refusals(console)] == [
        f'{{"name_hash":"{console.node.users.box.keyed_hash("nobody")}","reason":"unknown name"}}',
        '{"reason":"wrong password"}',
        '{"reason":"wrong code"}',
        '{"reason":"wrong code"}',
    ]


async def test_a_refused_form_keeps_the_name_and_the_page_not_the_password(
    console: Console,
) -> None:
    browser = Browser(console.client)
    await browser.get("/console/sign-in?next=%2Fconsole%2Fcases%3Fstatus%3Dnew")
    response, text = await browser.post(
        "/console/sign-in",
        {
            "name": "alice",
            "password": "s3cret-typed",
            "code": "123456",
            "next": "/console/cases?status=new",
        },
    )
    assert response.status == 401
    assert 'value="alice"' in text
    assert 'name="next" value="/console/cases?status=new"' in text
    assert "s3cret-typed" not in text
    assert "123456" not in text


async def test_sign_in_limits_survive_a_restart(data_dir: DataDir, clock: ManualClock) -> None:
    async with serving(data_dir, clock) as console:
        browser = Browser(console.client)
        said = [await _try(browser, "alice", "wrong", "1") for _ in range(10)]
        assert all(status == 401 for status, _ in said)
    async with (
        open_node(data_dir, clock) as node,
        TestClient(TestServer(node.make_app(), host="127.0.0.1")) as client,
    ):
        _status, text = await _try(Browser(client), "alice", "wrong", "1")
    assert "too many sign-in attempts" in text


async def test_totp_secrets_are_sealed_and_clear_ones_are_sealed_at_start(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with serving(data_dir, clock) as console:
        password, secret = console.secrets["alice"]
    assert secret is not None
    with sqlite3.connect(data_dir.database) as conn:
        stored = dict(conn.execute("SELECT name, totp_secret FROM users").fetchall())
        assert all(is_sealed(value) for value in stored.values())
        assert secret not in repr(stored)
        # As a node before migration 19 stored it: in clear.
        conn.execute("UPDATE users SET totp_secret = ? WHERE name = 'alice'", (secret,))
        # A sealed value copied onto another person's row does not open there.
        conn.execute("UPDATE users SET totp_secret = ? WHERE name = 'rene'", (stored["alice"],))
    async with open_node(data_dir, clock) as node:
        row = await node.users.store.get("alice")
        assert row is not None
        assert row.totp_secret is not None
        assert is_sealed(row.totp_secret)
        audit = await node.db.fetch_all(
            "SELECT details FROM audit_log WHERE event = 'user.totp_sealed'"
        )
        assert [a["details"] for a in audit] == ['{"people":1}']
        clock.advance(timedelta(seconds=60))
        session = await node.users.sign_in(
            "alice", password, pyotp.TOTP(secret).at(clock.now()), client="test"
        )
        assert session.person.name == "alice"
        with pytest.raises(SealedSecretError):
            await node.users.sign_in("rene", "rene-own-password", "000000", client="test")


# 3. ---------------------------------------------------------------------------------------------
async def test_an_expired_session_returns_to_the_page_after_sign_in(console: Console) -> None:
    result = await console.node.cases.submit("https://fr.example/a.jpg", actor="test")
    case = f"/console/case/{result.report_id}"
    browser = await console.browser("alice")
    console.clock.advance(timedelta(minutes=481))
    # A form posted after the session ended: sign in, then back on the page it came from.
    response, _ = await browser.post(f"{case}/action", {"code": "moved"})
    assert response.status == 303
    location = response.headers["Location"]
    assert location.startswith("/console/sign-in?")
    assert parse_qs(urlsplit(location).query) == {"next": [case]}
    _response, page = await browser.get(location)
    assert f'name="next" value="{case}"' in page
    password, secret = console.secrets["alice"]
    assert secret is not None
    response, _ = await browser.post(
        "/console/sign-in",
        {
            "name": "alice",
            "password": password,
            "code": pyotp.TOTP(secret).at(console.clock.now()),
            "next": case,
        },
    )
    assert (response.status, response.headers["Location"]) == (303, case)
    # Never anywhere else.
    for elsewhere in ("https://evil.example/", "//evil.example/", "/console/\\\\evil.example"):
        _response, page = await Browser(console.client).get(
            f"/console/sign-in?next={quote(elsewhere, safe='')}"
        )
        assert 'name="next" value="/console/"' in page
