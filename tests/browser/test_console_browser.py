"""The console in a real browser (Debian's chromium) against real node processes.

Each page visited is checked by axe-core for serious or critical accessibility violations and
saved as a screenshot (the paths are printed at the end of the run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from axe_selenium_python import Axe
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.conftest import BLOCKING, Person, Site
from tests.support.cluster import NodeProcess, cli_json, wait_for


def check_page(driver: Any, site: Site, name: str, show: str | None = None) -> None:
    """axe-core finds no serious or critical violation; a screenshot is kept (of the element
    with id `show`, scrolled into view, when given)."""
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    blocking = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v.get("impact") in BLOCKING
    ]
    assert not blocking, f"{name}: {blocking}"
    if show is not None:
        driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, show))
    path = site.shots / f"{len(site.pages):02d}-{name}.png"
    driver.save_screenshot(str(path))
    site.pages.append(str(path))


def visit(driver: Any, site: Site, node: NodeProcess, path: str, name: str) -> None:
    driver.get(node.url + path)
    check_page(driver, site, name)


def sign_in(driver: Any, site: Site, node: NodeProcess, person: Person) -> None:
    driver.delete_all_cookies()
    driver.get(node.url + "/console/")
    assert "/console/sign-in" in driver.current_url
    driver.find_element(By.ID, "name").send_keys(person.name)
    driver.find_element(By.ID, "password").send_keys(person.password)
    driver.find_element(By.ID, "code").send_keys(person.code())
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: "/console/queue" in driver.current_url or _on_password_page(driver), 5)
    if _on_password_page(driver):
        # The password the operator was shown sets the person's own, and nothing else.
        check_page(driver, site, f"set-password-{person.name}")
        own = f"{person.name}-own-password"
        driver.find_element(By.ID, "current").send_keys(person.password)
        driver.find_element(By.ID, "new").send_keys(own)
        driver.find_element(By.ID, "repeated").send_keys(own)
        with navigating(driver):
            driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        person.password = own
    wait_for(lambda: "/console/queue" in driver.current_url, timeout=5)


def _on_password_page(driver: Any) -> bool:
    return bool(driver.current_url.endswith("/console/password"))


@contextmanager
def navigating(driver: Any) -> Iterator[None]:
    """Wait until the page the block leaves has been replaced by the next one."""
    old = driver.find_element(By.TAG_NAME, "html")
    yield
    WebDriverWait(driver, 10).until(lambda _: _replaced(old))


def _replaced(element: Any) -> bool:
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        # Chromium sometimes reports a node of the page just left this way, not as stale.
        if "does not belong to the document" in str(exc.msg):
            return True
        raise
    return False


def heading(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def test_sign_in_with_totp_sets_a_strict_session_cookie(driver: Any, site: Site) -> None:
    driver.delete_all_cookies()
    driver.get(site.fr.url + "/console/queue")
    assert "/console/sign-in" in driver.current_url
    check_page(driver, site, "sign-in")
    alice = site.people["alice"]
    # Without the one-time code the node (TOTP mandatory) refuses.
    driver.find_element(By.ID, "name").send_keys(alice.name)
    driver.find_element(By.ID, "password").send_keys(alice.password)
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: "one-time code" in driver.page_source, timeout=5)
    sign_in(driver, site, site.fr, alice)
    cookie = driver.get_cookie("hln_session")
    # Chromium keeps a Secure cookie on http://127.0.0.1 (a secure context) and sends it back.
    assert cookie is not None
    assert cookie["secure"] is True
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert heading(driver) == "Triage queue"
    check_page(driver, site, "queue")


def test_triage_with_the_keyboard_and_search_by_each_reference(driver: Any, site: Site) -> None:
    fr = site.fr
    status, body = fr.post(
        "/api/v1/public/reports",
        {"url": "http://fr.example/k/1.jpg", "description": "found while searching"},
        token=None,
    )
    assert status == 202
    public_ref = body["reference"]
    report_id = wait_for(
        lambda: next(
            (
                r["id"]
                for r in fr.get("/api/v1/reports")[1]["reports"]
                if r["id"].endswith(public_ref)
            ),
            None,
        )
    )
    case = fr.report(report_id)
    assert case is not None
    sign_in(driver, site, fr, site.people["alice"])
    # Keyboard alone: j selects the oldest case, Enter opens it.
    body_el = driver.find_element(By.TAG_NAME, "body")
    body_el.send_keys("j")
    with navigating(driver):
        driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(lambda: "/console/case/" in driver.current_url, timeout=5)
    for ref in (report_id, public_ref, case["local_ref"]):
        search = driver.find_element(By.ID, "q")
        search.clear()
        with navigating(driver):
            search.send_keys(ref, Keys.ENTER)
        wait_for(lambda: driver.current_url.endswith(f"/console/case/{report_id}"), timeout=5)
        assert public_ref in heading(driver)
    check_page(driver, site, "case")
    # The URL is shown, never as a link; the public reporter's words are there for analysts.
    assert driver.find_elements(By.CSS_SELECTOR, "a[href^='http://fr.example']") == []
    field = driver.find_element(By.ID, "case-url")
    assert field.get_attribute("value") == "http://fr.example/k/1.jpg"
    assert "found while searching" in driver.page_source
    copy = driver.find_element(By.CSS_SELECTOR, "button[data-copy]")
    assert copy.is_displayed()  # the script revealed it
    # Words search (FTS5) over the host.
    search = driver.find_element(By.ID, "q")
    search.clear()
    with navigating(driver):
        search.send_keys("fr.example", Keys.ENTER)
    wait_for(lambda: "/console/search" in driver.current_url, timeout=5)
    wait_for(lambda: public_ref in driver.page_source, timeout=5)
    check_page(driver, site, "search")
    visit(driver, site, fr, "/console/cases", "all-cases")
    visit(driver, site, fr, "/console/stats", "stats")


def _assess(driver: Any, verdict: str, category: str, basis: str) -> None:
    Select(driver.find_element(By.ID, "a-verdict")).select_by_value(verdict)
    Select(driver.find_element(By.ID, "a-category")).select_by_value(category)
    driver.find_element(By.ID, "a-basis").send_keys(basis)
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "#assess button[type=submit]").click()


def test_four_eyes_then_the_peer_acts_and_the_outcome_comes_back(driver: Any, site: Site) -> None:
    fr, de = site.fr, site.de
    status, body = fr.post("/api/v1/reports", {"url": "http://de.example/g/7.jpg"})
    assert status == 201
    report_id = body["id"]
    wait_for(lambda: (fr.report(report_id) or {}).get("hosting", {}).get("status") == "done")
    sign_in(driver, site, fr, site.people["alice"])
    driver.get(f"{fr.url}/console/case/{report_id}")
    _assess(driver, "baseline", "csam", "Art. 227-23")
    wait_for(lambda: "review-requested" in driver.current_url, timeout=5)
    assert fr.report(report_id)["status"] == "new"  # type: ignore[index]
    check_page(driver, site, "case-awaiting-review")
    sign_in(driver, site, fr, site.people["rene"])
    driver.get(f"{fr.url}/console/case/{report_id}")
    # Rene first sends it back, with his reason; alice sees it on the case and in her queue.
    driver.find_element(By.ID, "review-reason").send_keys("cite the article on images")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=reject]").click()
    sign_in(driver, site, fr, site.people["alice"])
    assert "cite the article on images" in driver.page_source  # her triage queue
    driver.get(f"{fr.url}/console/case/{report_id}")
    assert "Verdict rejected by a reviewer" in driver.page_source
    check_page(driver, site, "case-rejected-review", show="h-review")
    _assess(driver, "baseline", "csam", "Art. 227-23 (images)")
    wait_for(lambda: "review-requested" in driver.current_url, timeout=5)
    sign_in(driver, site, fr, site.people["rene"])
    driver.get(f"{fr.url}/console/case/{report_id}")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=confirm]").click()
    wait_for(lambda: fr.report(report_id)["status"] == "routed", timeout=5)  # type: ignore[index]
    audit = cli_json(fr.root, "reports", "show", report_id)
    assert audit["assessment"]["verdict"] == "baseline"
    # The case arrives at the peer: its analyst sees it and records the outcome.
    wait_for(lambda: de.report(report_id), timeout=20)
    sign_in(driver, site, de, site.people["dora"])
    assert report_id[-8:] in driver.page_source  # in the peer's triage queue
    driver.get(f"{de.url}/console/case/{report_id}")
    check_page(driver, site, "peer-case")
    Select(driver.find_element(By.ID, "x-code")).select_by_value("content_removed")
    driver.find_element(By.ID, "x-reason").send_keys("removed by the host")
    with navigating(driver):
        driver.find_element(By.ID, "x-reason").submit()
    # ...and the outcome comes back to the origin's case page.
    sign_in(driver, site, fr, site.people["alice"])

    def came_back() -> bool:
        driver.get(f"{fr.url}/console/case/{report_id}")
        return "de-eco" in driver.find_element(By.ID, "h-timeline").find_element(
            By.XPATH, ".."
        ).text and "closed" in heading(driver)

    wait_for(came_back, timeout=20, interval=0.5)


def test_an_operator_suspends_a_peer(driver: Any, site: Site) -> None:
    fr = site.fr
    sign_in(driver, site, fr, site.people["olga"])
    visit(driver, site, fr, "/console/peers", "peers")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "button[aria-label='Suspend de-eco']").click()
    wait_for(lambda: "peer-suspend" in driver.current_url, timeout=5)
    assert cli_json(fr.root, "peers", "show", "de-eco")["status"] == "suspended"
    check_page(driver, site, "peers-suspended")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "button[aria-label='Resume de-eco']").click()
    wait_for(lambda: "peer-resume" in driver.current_url, timeout=5)
    assert cli_json(fr.root, "peers", "show", "de-eco")["status"] == "active"
    for path, name in (
        ("/console/channels", "channels"),
        ("/console/users", "users"),
        ("/console/audit", "audit"),
    ):
        visit(driver, site, fr, path, name)
    assert "Intact" in driver.page_source
    # French, by choice.
    Select(driver.find_element(By.ID, "lang-choice")).select_by_value("fr")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "#lang-choice + button").click()
    wait_for(lambda: driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr", 5)
    check_page(driver, site, "audit-fr")


def test_the_last_operator_cannot_disable_or_demote_themselves(driver: Any, site: Site) -> None:
    """Issue 26: the only operator disabling themselves closed the console to everyone."""
    fr = site.fr
    sign_in(driver, site, fr, site.people["olga"])
    visit(driver, site, fr, "/console/users", "users-last-operator")
    with navigating(driver):
        driver.find_element(
            By.CSS_SELECTOR,
            "button[aria-label='Disable olga'], button[aria-label='Désactiver olga']",
        ).click()
    refused = ("olga is the last active operator", "olga est le dernier opérateur actif")
    wait_for(lambda: any(text in driver.page_source for text in refused), timeout=5)
    check_page(driver, site, "last-operator-refused")
    people = {u["name"]: u for u in cli_json(fr.root, "users", "list")}
    assert people["olga"]["state"] == "active"
    visit(driver, site, fr, "/console/users", "users-role")
    Select(driver.find_element(By.ID, "role-olga")).select_by_value("analyst")
    with navigating(driver):
        driver.find_element(By.CSS_SELECTOR, "#role-olga + button").click()
    wait_for(lambda: any(text in driver.page_source for text in refused), timeout=5)
    people = {u["name"]: u for u in cli_json(fr.root, "users", "list")}
    assert people["olga"]["role"] == "operator"


def test_a_refused_form_keeps_what_the_analyst_typed(driver: Any, site: Site) -> None:
    """Issue 26: a refused form lost everything typed. The case page comes back with why, and
    the reason typed is still in its field, ready to be corrected and sent again."""
    fr = site.fr
    status, body = fr.post("/api/v1/reports", {"url": "http://de.example/typed/1.jpg"})
    assert status == 201
    report_id = body["id"]
    sign_in(driver, site, fr, site.people["alice"])
    driver.get(f"{fr.url}/console/case/{report_id}")
    reason = "the reseller's range: see the abuse desk's answer of 7 December"
    # Three letters where the country takes two: the browser's maxlength would stop the
    # typing, so the field is filled as a script (or an older browser) would send it.
    driver.execute_script(
        "document.getElementById('o-country').removeAttribute('maxlength');"
        "document.getElementById('o-country').value = 'FRA';"
    )
    driver.find_element(By.ID, "o-reason").send_keys(reason)
    with navigating(driver):
        driver.find_element(By.ID, "o-reason").submit()
    alert = driver.find_element(By.ID, "refused")
    assert "What you typed is still in its form." in alert.text or "resté" in alert.text
    check_page(driver, site, "case-refused-form-kept", show="o-reason")
    assert driver.find_element(By.ID, "o-reason").get_attribute("value") == reason
    assert driver.find_element(By.ID, "o-country").get_attribute("value") == "FRA"
    field = driver.find_element(By.ID, "o-country")
    field.clear()
    field.send_keys("DE")
    with navigating(driver):
        field.submit()
    wait_for(lambda: "overridden" in driver.current_url, timeout=5)
    case = fr.report(report_id)
    assert case is not None
    assert case["hosting"]["override"]["reason"] == reason


def test_a_cases_hashes_are_shown_and_added_on_its_page(driver: Any, site: Site) -> None:
    fr = site.fr
    sha256, md5 = "sha256:" + "ab" * 32, "md5:" + "ef" * 16
    status, body = fr.post(
        "/api/v1/reports",
        {"url": "http://de.example/h/9.jpg", "hashes": ["pdq:" + "0f" * 32 + ":30"]},
    )
    assert status == 201
    report_id = body["id"]
    sign_in(driver, site, fr, site.people["alice"])
    driver.get(f"{fr.url}/console/case/{report_id}")

    def hashes_section() -> str:
        return str(driver.find_element(By.ID, "h-hashes").find_element(By.XPATH, "..").text)

    assert "never: PDQ quality 30 is below 50: kept, but never matched" in hashes_section()
    driver.find_element(By.ID, "h-values").send_keys(f"{sha256}\n{md5}")
    with navigating(driver):
        driver.find_element(By.ID, "h-values").submit()
    wait_for(lambda: "hashes-added" in driver.current_url, timeout=5)
    check_page(driver, site, "case-hashes", show="h-hashes")
    assert "ab" * 32 in hashes_section()
    assert "ef" * 16 in hashes_section()
    shown = fr.report(report_id)["hashes"]  # type: ignore[index]
    assert sorted(h["type"] for h in shown) == ["md5", "pdq", "sha256"]


def test_known_content_comes_first_and_shows_its_evidence(
    driver: Any, site: Site, tmp_path: Path
) -> None:
    fr = site.fr
    known = "sha256:" + "5e" * 32
    listing = tmp_path / "known.csv"
    listing.write_text(f"type,value,category,grade\nsha256,{'5e' * 32},csem,B\n", encoding="utf-8")
    cli_json(fr.root, "hashes", "import", str(listing), "--list", "known-fr")
    status, body = fr.post(
        "/api/v1/reports", {"url": "http://de.example/known/1.jpg", "hashes": [known]}
    )
    assert status == 201
    report_id = body["id"]
    sign_in(driver, site, fr, site.people["alice"])
    driver.get(f"{fr.url}/console/queue")
    first = driver.find_element(By.ID, "h-known").find_element(By.XPATH, "..")
    assert report_id[-8:] in first.text
    check_page(driver, site, "queue-known-first", show="h-known")
    driver.get(f"{fr.url}/console/case/{report_id}")
    evidence = driver.find_element(By.ID, "h-known").find_element(By.XPATH, "..").text
    assert "on our list known-fr since" in evidence
    assert known in evidence
    assert "csem (B)" in evidence
    check_page(driver, site, "case-known-content", show="h-known")
