"""One rule for URLs and texts: intake, import lines and a peer's records refuse bidi controls."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.app import Node
from node.cases.intake import ImportItem, Intake
from node.contacts import BIDI_CONTROLS, BIDI_MARKS
from node.errors import InvalidInput
from node.store import peer_outbox
from protocol.records import record_bytes
from tests.factories import sample_report
from tests.node.test_federation import content_removed, forward_case, queue_action
from tests.support.federation import Pair
from tests.support.nodes import table_counts as all_counts


async def table_counts(node: Node) -> dict[str, int]:
    """What a record could have written, but the audit log (which records the refusal)."""
    counts = await all_counts(node)
    del counts["audit_log"]
    return counts


WHY = "contains a bidirectional control character"
PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~/", max_size=30)
TEXT = st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), max_size=30)


@given(PATH, st.sampled_from(BIDI_CONTROLS + BIDI_MARKS), PATH)
def test_intake_and_import_refuse_a_url_with_a_bidi_control_in_the_same_words(
    before: str, control: str, after: str
) -> None:
    url = f"http://de.example/{before}{control}{after}"
    reason = f"url {WHY} (U+{ord(control):04X})"
    with pytest.raises(InvalidInput) as submitted:
        Intake.check(url)
    with pytest.raises(InvalidInput) as imported:
        ImportItem.check({"url": url, "category": "hate"})
    assert str(submitted.value).startswith(reason)
    assert str(imported.value) == str(submitted.value)


@given(TEXT, st.sampled_from(BIDI_CONTROLS), TEXT)
def test_every_free_text_of_intake_and_import_refuses_a_bidi_control(
    before: str, control: str, after: str
) -> None:
    text = before + control + after
    url = "http://de.example/a"
    for field, check in (
        ("note", lambda: Intake.check(url, note=text)),
        ("description", lambda: Intake.check(url, description=text)),
        ("contact", lambda: Intake.check(url, contact=text)),
        ("note", lambda: ImportItem.check({"url": url, "note": text})),
        (
            "legal_basis",
            lambda: ImportItem.check(
                {"url": url, "category": "hate", "verdict": "national", "legal_basis": text}
            ),
        ),
    ):
        with pytest.raises(InvalidInput) as refused:
            check()
        assert str(refused.value).startswith(f"{field} {WHY} (U+{ord(control):04X})"), field


async def test_a_peer_action_whose_reason_holds_a_bidi_control_is_refused_in_the_same_words(
    pair: Pair,
) -> None:
    report_id = await forward_case(pair)
    before = await table_counts(pair.fr.node)
    spoofed = content_removed(
        uuid.UUID(report_id),
        origin="fr-pdc",
        by="de-eco",
        country="DE",
        reason="removed: abc\u202egpj.exe",
    )
    await queue_action(pair.de, "fr-pdc", spoofed, record_bytes(spoofed))
    await pair.de.settle()
    [dead] = await pair.fr.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'in'")
    assert dead["reason"].startswith(f"reason {WHY} (U+202E), which makes text display")
    assert await table_counts(pair.fr.node) == before


async def test_a_peer_report_whose_url_holds_a_bidi_control_is_refused_in_the_same_words(
    pair: Pair,
) -> None:
    report = sample_report("de-eco").model_copy(
        update={"url": "https://files.example-host.de/abc\u202egpj.exe"}
    )
    before = await table_counts(pair.fr.node)
    async with pair.de.node.db.write() as conn:
        await conn.call(
            peer_outbox.enqueue_one_txn,
            peer_id="fr-pdc",
            record_type="report",
            record_id=str(report.id),
            report_id=str(report.id),
            payload=record_bytes(report),
            at="2026-11-29T09:00:00Z",
        )
    await pair.de.settle()
    [dead] = await pair.fr.node.db.fetch_all("SELECT * FROM dead_letters WHERE direction = 'in'")
    assert dead["reason"].startswith(f"url {WHY} (U+202E)")
    assert await table_counts(pair.fr.node) == before
