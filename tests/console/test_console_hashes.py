"""The case page's hashes over real HTTP: shown with why a poor PDQ is never matched, added by a
form with its CSRF token, a bad value refused in one line, in English and in French."""

from __future__ import annotations

from tests.console.conftest import Console

SHA256 = "sha256:" + "ab" * 32
PDQ_POOR = "pdq:" + "0f" * 32 + ":30"
MD5 = "md5:" + "ef" * 16


async def test_the_case_page_shows_hashes_and_adds_them_by_its_form(console: Console) -> None:
    submitted = await console.node.cases.submit(
        "https://fr.example/h.jpg", actor="alice", hashes=[SHA256, PDQ_POOR]
    )
    case_path = f"/console/case/{submitted.report_id}"
    alice = await console.browser("alice")
    _, text = await alice.get(case_path)
    assert '<code class="hash">' + "ab" * 32 + "</code>" in text
    assert "never: PDQ quality 30 is below 50: kept, but never matched" in text
    assert f'action="{case_path}/hashes"' in text
    response, _ = await alice.post(f"{case_path}/hashes", {"hashes": f"{MD5}\n{SHA256}"})
    assert response.status == 303
    assert response.headers["Location"] == f"{case_path}?msg=hashes-added"
    shown = (await console.node.cases.show(submitted.report_id))["hashes"]
    assert {(h["type"], h["source"]) for h in shown} == {
        ("sha256", "analyst"),
        ("pdq", "analyst"),
        ("md5", "analyst"),
    }
    rows = await console.node.db.fetch_all(
        "SELECT actor FROM audit_log WHERE subject = ? AND event = 'report.hashes_added'"
        " ORDER BY seq",
        (submitted.report_id,),
    )
    assert [r["actor"] for r in rows] == ["alice", "alice"]


async def test_a_bad_hash_in_the_form_is_refused_in_one_line_and_nothing_added(
    console: Console,
) -> None:
    submitted = await console.node.cases.submit("https://fr.example/b.jpg", actor="alice")
    case_path = f"/console/case/{submitted.report_id}"
    alice = await console.browser("alice")
    await alice.get(case_path)
    response, text = await alice.post(f"{case_path}/hashes", {"hashes": f"{SHA256} md5:xyz"})
    assert response.status == 422
    assert "md5 value must be hexadecimal (got &#39;xyz&#39;)" in text
    response, text = await alice.post(f"{case_path}/hashes", {"hashes": "  "})
    assert response.status == 422
    assert "give at least one hash (TYPE:VALUE)" in text
    # Without the form's token: refused before anything is read.
    response, _ = await alice.post(f"{case_path}/hashes", {"hashes": SHA256}, csrf=False)
    assert response.status == 403
    assert (await console.node.cases.show(submitted.report_id))["hashes"] == []


async def test_hashes_and_their_refusals_in_french(french_console: Console) -> None:
    submitted = await french_console.node.cases.submit(
        "https://fr.example/f.jpg", actor="alice", hashes=[PDQ_POOR]
    )
    case_path = f"/console/case/{submitted.report_id}"
    alice = await french_console.browser("alice")
    _, text = await alice.get(case_path)
    assert "Empreintes" in text
    assert "jamais: qualité PDQ 30 inférieure à 50 : conservée, mais jamais comparée" in text
    assert "Ajouter des empreintes" in text
    response, text = await alice.post(f"{case_path}/hashes", {"hashes": "crc32:00"})
    assert response.status == 422
    assert "type d\u2019empreinte inconnu &#39;crc32&#39;" in text
