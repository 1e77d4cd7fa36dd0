"""Four-eyes over real HTTP: console, bulk and API verdicts wait for a different person."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from node.errors import Conflict
from tests.console.conftest import Browser, Console

REVIEW_ID = re.compile(r'name="review" value="([0-9a-f]+)"')
SECRET = re.compile(r"<code>([^<]+)</code>")
TOTP = re.compile(r"TOTP: <code>([A-Z2-7]+)</code>")


async def _case(console: Console, url: str) -> str:
    result = await console.node.cases.submit(url, actor="test")
    await console.node.trace_pending()
    return result.report_id


async def _assess(browser: Browser, report_id: str, verdict: str, category: str = "csam") -> str:
    response, text = await browser.post(
        f"/console/case/{report_id}/assess", {"verdict": verdict, "category": category}
    )
    assert response.status == 303, text
    return response.headers["Location"]


async def _seen(browser: Browser, report_id: str) -> str:
    """The review id the case page shows a reviewer (the form's hidden field)."""
    _, text = await browser.get(f"/console/case/{report_id}")
    found = REVIEW_ID.search(text)
    assert found is not None, text
    return found.group(1)


async def _decide(
    browser: Browser, report_id: str, review: str, decision: str, reason: str = ""
) -> tuple[int, str]:
    response, text = await browser.post(
        f"/console/case/{report_id}/review",
        {"decision": decision, "review": review, "reason": reason},
    )
    return response.status, text


async def _events(console: Console, report_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await console.node.db.fetch_all(
        "SELECT actor, event, details FROM audit_log WHERE subject = ? ORDER BY seq", (report_id,)
    )
    return [(r["actor"], r["event"], orjson.loads(r["details"])) for r in rows]


async def test_a_national_verdict_waits_and_a_reviewer_confirms_what_they_saw(
    console: Console,
) -> None:
    report_id = await _case(console, "https://fr.example/national.jpg")
    alice = await console.browser("alice")
    assert "review-requested" in await _assess(alice, report_id, "national")
    case = await console.node.cases.show(report_id)
    # Nothing written, nothing routed: the verdict waits in `review`.
    assert (case["status"], case["assessment"]["verdict"], case["routing"]["decision"]) == (
        "new",
        None,
        None,
    )
    assert case["review"]["state"] == "pending"
    assert (case["review"]["verdict"], case["review"]["analyst"]) == ("national", "alice")
    rene = await console.browser("rene")
    first = await _seen(rene, report_id)
    # Alice changes her mind after rene opened the case: his confirmation names the old one.
    await _assess(alice, report_id, "baseline")
    status, text = await _decide(rene, report_id, first, "confirm")
    assert status == 409
    assert "the verdict changed since you opened the case" in text
    assert (await console.node.cases.show(report_id))["status"] == "new"
    events = await _events(console, report_id)
    cancelled = [d for _a, e, d in events if e == "review.cancelled"]
    assert [(d["review"], d["verdict"]) for d in cancelled] == [(first, "national")]
    # The one he now sees is confirmed, and routes.
    second = await _seen(rene, report_id)
    assert second != first
    status, _ = await _decide(rene, report_id, second, "confirm")
    assert status == 303
    case = await console.node.cases.show(report_id)
    assert (case["status"], case["assessment"]["verdict"]) == ("routed", "baseline")
    assert case["review"]["state"] == "confirmed"
    assert case["review"]["reviewer"] == "rene"
    written = [(a, e) for a, e, _ in await _events(console, report_id) if e == "report.assessed"]
    assert written == [("alice (confirmed by rene)", "report.assessed")]


async def test_a_re_rating_of_a_confirmed_case_waits_for_a_reviewer_too(console: Console) -> None:
    report_id = await _case(console, "https://fr.example/rerated.jpg")
    alice = await console.browser("alice")
    rene = await console.browser("rene")
    await _assess(alice, report_id, "baseline")
    status, _ = await _decide(rene, report_id, await _seen(rene, report_id), "confirm")
    assert status == 303
    # Alone, alice cannot undo what two decided: neither by recording not_illegal...
    response, text = await alice.post(
        f"/console/case/{report_id}/action", {"code": "not_illegal", "reason": "changed my mind"}
    )
    assert response.status == 409
    assert "confirmed by a reviewer" in text
    assert (await console.node.cases.show(report_id))["status"] == "routed"
    # ...nor by a re-rating, not even towards not_illegal.
    assert "review-requested" in await _assess(alice, report_id, "not_illegal")
    case = await console.node.cases.show(report_id)
    assert (case["status"], case["assessment"]["verdict"]) == ("routed", "baseline")
    assert (case["review"]["state"], case["review"]["verdict"]) == ("pending", "not_illegal")
    # Nor can the service be asked to write it directly: the gate sits at the write.
    with pytest.raises(Conflict, match="waits for a reviewer"):
        await console.node.cases.assess(
            report_id, verdict="not_illegal", category="csam", legal_basis=None, actor="alice"
        )
    status, _ = await _decide(rene, report_id, await _seen(rene, report_id), "confirm")
    assert status == 303
    assert (await console.node.cases.show(report_id))["assessment"]["verdict"] == "not_illegal"


async def test_a_first_not_illegal_verdict_needs_nobody(console: Console) -> None:
    report_id = await _case(console, "https://fr.example/fine.jpg")
    alice = await console.browser("alice")
    assert "msg=assessed" in await _assess(alice, report_id, "not_illegal")
    case = await console.node.cases.show(report_id)
    assert case["assessment"]["verdict"] == "not_illegal"
    assert case["review"] is None


async def test_the_reviewer_is_never_the_analyst_whatever_the_entry(console: Console) -> None:
    # A reviewer gives a verdict in the console and cannot confirm it.
    report_id = await _case(console, "https://fr.example/self.jpg")
    rene = await console.browser("rene")
    await _assess(rene, report_id, "baseline")
    status, text = await _decide(rene, report_id, await _seen(rene, report_id), "confirm")
    assert status == 409
    assert "someone other than the analyst" in text
    # Through the API with a token of his own: the API records "rene", as the console does.
    token = await console.node.tokens.create("analyst", None, actor="olga", person="rene")
    other = await _case(console, "https://fr.example/token.jpg")
    response = await console.client.post(
        f"/api/v1/reports/{other}/assessment",
        json={"verdict": "national", "category": "csam"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    body = await response.json()
    assert body["review"]["analyst"] == "rene"
    assert body["routing"]["decision"] is None
    status, text = await _decide(rene, other, await _seen(rene, other), "confirm")
    assert status == 409
    assert "someone other than the analyst" in text
    # The same person spelt otherwise: "Rene" from the command line's --as is rene.
    third = await _case(console, "https://fr.example/case.jpg")
    await console.node.reviews.assess(
        third, verdict="baseline", category="csam", legal_basis=None, actor="Rene", person="Rene"
    )
    status, text = await _decide(rene, third, await _seen(rene, third), "confirm")
    assert status == 409
    assert (await console.node.cases.show(third))["status"] == "new"


async def test_a_token_of_no_one_gives_no_verdict_that_needs_review(console: Console) -> None:
    token = await console.node.tokens.create("analyst", "rene")  # named so, but no person
    report_id = await _case(console, "https://fr.example/legacy.jpg")
    headers = {"Authorization": f"Bearer {token}"}
    response = await console.client.post(
        f"/api/v1/reports/{report_id}/assessment",
        json={"verdict": "baseline", "category": "csam"},
        headers=headers,
    )
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    assert "named person" in (await response.json())["detail"]
    case = await console.node.cases.show(report_id)
    assert (case["review"], case["routing"]["decision"]) == (None, None)
    # It keeps working for what needs nobody else, recorded as before.
    response = await console.client.post(
        f"/api/v1/reports/{report_id}/assessment",
        json={"verdict": "not_illegal", "category": "csam"},
        headers=headers,
    )
    assert response.status == 200
    actors = [a for a, e, _ in await _events(console, report_id) if e == "report.assessed"]
    assert actors == ["analyst:rene"]


async def test_bulk_assessment_waits_for_review_case_by_case(console: Console) -> None:
    ids = [await _case(console, f"https://fr.example/bulk/{n}.jpg") for n in range(2)]
    alice = await console.browser("alice")
    response, _ = await alice.post(
        "/console/bulk",
        [("case", i) for i in ids]
        + [("op", "assess"), ("verdict", "national"), ("category", "csam")],
    )
    assert response.status == 303
    for report_id in ids:
        case = await console.node.cases.show(report_id)
        assert (case["status"], case["review"]["state"]) == ("new", "pending")
    rene = await console.browser("rene")
    status, _ = await _decide(rene, ids[0], await _seen(rene, ids[0]), "confirm")
    assert status == 303
    assert [(await console.node.cases.show(i))["status"] for i in ids] == ["routed", "new"]


async def test_a_rejection_needs_a_reason_and_goes_back_to_the_analyst(console: Console) -> None:
    report_id = await _case(console, "https://fr.example/rejected.jpg")
    alice = await console.browser("alice")
    rene = await console.browser("rene")
    await _assess(alice, report_id, "baseline")
    seen = await _seen(rene, report_id)
    status, text = await _decide(rene, report_id, seen, "reject")
    assert status == 422
    assert "a rejection needs a reason" in text
    status, _ = await _decide(rene, report_id, seen, "reject", "only a drawing: national at most")
    assert status == 303
    case = await console.node.cases.show(report_id)
    assert (case["status"], case["assessment"]["verdict"]) == ("new", None)
    review = case["review"]
    assert (review["state"], review["reviewer"], review["reason"]) == (
        "rejected",
        "rene",
        "only a drawing: national at most",
    )
    assert review["decided_at"]
    # The API shows the same.
    token = await console.node.tokens.create("analyst", None, actor="olga", person="alice")
    response = await console.client.get(
        f"/api/v1/reports/{report_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert (await response.json())["review"] == review
    # The case page, and alice's queue (not rene's), with the reason.
    _, text = await alice.get(f"/console/case/{report_id}")
    assert "Verdict rejected by a reviewer" in text
    assert "only a drawing: national at most" in text
    _, text = await alice.get("/console/queue")
    assert "Your verdicts rejected by a reviewer" in text
    assert "only a drawing: national at most" in text
    _, text = await rene.get("/console/queue")
    assert "Your verdicts rejected by a reviewer" not in text
    # Given again, it leaves her queue and waits for a reviewer once more.
    await _assess(alice, report_id, "national")
    _, text = await alice.get("/console/queue")
    assert "Your verdicts rejected by a reviewer" not in text
    assert (await console.node.cases.show(report_id))["review"]["state"] == "pending"


async def test_a_first_password_only_sets_ones_own(console: Console) -> None:
    report_id = await _case(console, "https://fr.example/operator.jpg")
    olga = await console.browser("olga")
    await _assess(olga, report_id, "baseline")  # operators do analyst work too
    # Olga makes a reviewer account and signs in with the password she was shown.
    response, text = await olga.post("/console/users/add", {"name": "bob", "role": "reviewer"})
    assert response.status == 200
    shown = SECRET.findall(text)
    totp = TOTP.search(text)
    assert shown
    assert totp is not None
    bob = Browser(console.client)
    await bob.sign_in("bob", shown[0], totp.group(1), console.clock.now())
    response, _ = await bob.get(f"/console/case/{report_id}")
    assert (response.status, response.headers["Location"]) == (303, "/console/password")
    _, page = await bob.get("/console/password")
    assert "only lets you set your own" in page
    review = (await console.node.cases.show(report_id))["review"]["id"]
    status, text = await _decide(bob, report_id, review, "confirm")
    assert status == 403
    assert "set your own password first" in text
    response, _ = await bob.post(
        f"/console/case/{report_id}/assess", {"verdict": "not_illegal", "category": "csam"}
    )
    assert response.status == 403
    case = await console.node.cases.show(report_id)
    assert (case["status"], case["review"]["state"]) == ("new", "pending")
    # Setting one's own checks the given one, and then the account works.
    response, text = await bob.post(
        "/console/password",
        {"current": "wrong", "new": "bob-own-password", "repeated": "bob-own-password"},
    )
    assert response.status == 401
    response, _ = await bob.post(
        "/console/password",
        {"current": shown[0], "new": "bob-own-password", "repeated": "bob-own-password"},
    )
    assert response.status == 303
    response, _ = await bob.get("/console/queue")
    assert response.status == 200
    events = [e for _a, e, _d in await _events(console, "bob")]
    assert "user.password_changed" in events
