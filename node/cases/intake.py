"""Intake: reports checked and normalised, then stored as new cases (one, or a batch at import)."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from node.cases.door import admit_txn, entry_status
from node.cases.gate import ReviewGate
from node.cases.hashes import HashMatcher, attach_hashes_txn, check_room, checked_hashes
from node.cases.lifecycle import CaseEvent
from node.cases.router import Router
from node.clock import Clock, iso
from node.contacts import free_text, public_contact
from node.countries import country_problem
from node.errors import N_, InvalidInput
from node.hashes.values import HashValue
from node.store import audit, submissions
from node.store.db import Database, Tx
from node.store.reports import Case, ReportStore
from node.urls import normalise_url
from protocol.ids import new_id, new_ids
from protocol.records import Category, Tlp, Verdict

MAX_NOTE = 8192
MAX_DESCRIPTION = 4000
MAX_CONTACT = 256
# A BCP 47 tag as browsers send it: a language, then optional region or script subtags.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")


@dataclass(frozen=True)
class Intake:
    """A report's intake fields, checked and normalised before any transaction starts."""

    url_key: str
    category: str | None
    tlp: Tlp
    note: str | None
    description: str | None
    contact: str | None
    language: str | None = None
    # Hashes the analyst (or the import) gave with it: attached with the case, never fetched.
    hashes: tuple[HashValue, ...] = ()

    @classmethod
    def check(
        cls,
        url: str,
        *,
        category: str | None = None,
        note: str | None = None,
        tlp: str | None = None,
        description: str | None = None,
        contact: str | None = None,
        language: str | None = None,
        hashes: object = None,
    ) -> Intake:
        return cls(
            url_key=normalise_url(url),
            category=choice(Category, category, "category").value if category is not None else None,
            tlp=choice(Tlp, tlp, "tlp") if tlp is not None else Tlp.AMBER,
            note=text_field(note, "note", MAX_NOTE),
            description=text_field(description, "description", MAX_DESCRIPTION),
            contact=_contact(contact),
            language=_language(language),
            hashes=checked_hashes(hashes),
        )


IMPORT_FIELDS = frozenset(
    {"url", "category", "note", "tlp", "verdict", "legal_basis", "hosting_country", "hashes"}
)
# Fields of an import line that may be a list (JSON lines) as well as text (CSV: one cell of
# values separated by spaces).
_LIST_FIELDS = frozenset({"hashes"})


@dataclass(frozen=True)
class ImportItem:
    intake: Intake
    verdict: str | None
    legal_basis: str | None
    hosting_country: str | None

    @classmethod
    def check(cls, data: dict[str, Any]) -> ImportItem:
        """Strict: every field is text or absent (null), `hashes` a list of texts too. A value
        of another type, even a falsy one such as {} or false, is refused rather than read as
        absent."""
        unknown = set(data) - IMPORT_FIELDS
        if unknown:
            raise InvalidInput(N_("unknown field(s): {fields}"), fields=", ".join(sorted(unknown)))
        for name, value in data.items():
            if name in _LIST_FIELDS:
                continue  # checked where it is read, member by member (checked_hashes)
            if value is not None and not isinstance(value, str):
                raise InvalidInput(
                    N_("{field} must be text or null (got {type} {value!r:.40})"),
                    field=name,
                    type=type(value).__name__,
                    value=value,
                )
        fields = {name: value for name, value in data.items() if value not in (None, "")}
        url = fields.get("url")
        if url is None:
            raise InvalidInput(N_("url is required"))
        verdict = fields.get("verdict")
        if verdict is not None:
            verdict = choice(Verdict, verdict, "verdict").value
            if "category" not in fields:
                raise InvalidInput(N_("an assessed report needs a category"))
        country = fields.get("hosting_country")
        if country is not None:
            problem = country_problem(country)
            if problem:
                raise InvalidInput(N_("hosting_country {problem}"), problem=problem)
            country = country.upper()
        return cls(
            intake=Intake.check(
                url,
                category=fields.get("category"),
                note=fields.get("note"),
                tlp=fields.get("tlp"),
                hashes=fields.get("hashes"),
            ),
            verdict=verdict,
            legal_basis=text_field(fields.get("legal_basis"), "legal_basis", 256),
            hosting_country=country,
        )


@dataclass(frozen=True)
class Submitted:
    report_id: str
    duplicate: bool
    duplicates: int


def choice(enum: Any, value: Any, field: str) -> Any:
    """`value` as a member of `enum`, or InvalidInput naming the allowed values."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(
            N_("{field} must be one of {allowed} (got {value!r})"),
            field=field,
            allowed=allowed,
            value=value,
        ) from None


def text_field(value: Any, field: str, limit: int) -> str | None:
    """Free text checked: a string, at most `limit` characters, no control characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(N_("{field} must be a string"), field=field)
    if len(value) > limit:
        raise InvalidInput(
            N_("{field} is longer than {limit} characters"), field=field, limit=limit
        )
    return free_text(value, field)


def _language(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _LANGUAGE_TAG.fullmatch(value):
        raise InvalidInput(
            N_("language must be a language tag such as fr or en (got {value!r:.40})"),
            value=value,
        )
    return value.lower()


def _contact(value: Any) -> str | None:
    text = text_field(value, "contact", MAX_CONTACT)
    return public_contact(text) if text else None


class CaseIntake:
    """New cases: submitted one by one (analysts, the public) or imported in batches."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        router: Router,
        *,
        node_id: str,
        wake: Callable[[list[str]], None],
        four_eyes: ReviewGate,
        hash_lists: HashMatcher,
    ) -> None:
        self.db = db
        self.store = ReportStore(db)
        self.clock = clock
        self.router = router
        self.node_id = node_id
        self.wake = wake  # called after a commit with the peers that have new outbox rows
        self.four_eyes = four_eyes
        self.hash_lists = hash_lists  # every hash given to a case is matched against them

    async def submit(
        self,
        url: str,
        *,
        actor: str,
        source: str = "analyst",
        category: str | None = None,
        note: str | None = None,
        tlp: str | None = None,
        description: str | None = None,
        contact: str | None = None,
        language: str | None = None,
        hashes: Sequence[object] | None = None,
    ) -> Submitted:
        """A new case, or a duplicate of the open case of the same URL. `hashes` (TYPE:VALUE
        texts) go on the case either way."""
        intake = Intake.check(
            url,
            category=category,
            note=note,
            tlp=tlp,
            description=description,
            contact=contact,
            language=language,
            hashes=hashes,
        )
        pushed: list[str] = []

        def submit_txn(conn: Tx) -> Submitted:
            return self._submit_in(conn, intake, actor=actor, source=source, pushed=pushed)

        submitted = await self.db.run(submit_txn)
        self.wake(pushed)
        return submitted

    def _submit_in(
        self, conn: Tx, intake: Intake, *, actor: str, source: str, pushed: list[str]
    ) -> Submitted:
        at = self.clock.now()
        now = iso(at)
        existing = self.store.open_by_urls(conn, [intake.url_key]).get(intake.url_key)
        if existing is not None:
            report_id, count = existing[0], existing[1] + 1
            ReportStore.set_duplicates_txn(conn, [(count, now, report_id)])
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="report.duplicate",
                subject=report_id,
                details={"source": source},
            )
            keep_words_txn(conn, report_id, intake, source, now)
            if attach_hashes_txn(
                conn,
                report_id,
                intake.hashes,
                matcher=self.hash_lists,
                source=source,
                at=now,
                actor=actor,
            ):
                pushed.extend(self.router.hashes_added_txn(conn, report_id, actor))
            return Submitted(report_id, True, count)
        case = self._new_case(intake, case_id=new_id(at), source=source, now=now)
        admit_txn(conn, [case])
        audit.append_many(conn, [submitted_entry(case, now, actor, source)])
        keep_words_txn(conn, case.id, intake, source, now)
        attach_hashes_txn(
            conn,
            case.id,
            intake.hashes,
            matcher=self.hash_lists,
            source=source,
            at=now,
            actor=actor,
        )
        return Submitted(case.id, False, 0)

    def _new_case(
        self,
        intake: Intake,
        *,
        case_id: uuid.UUID,
        source: str,
        now: str,
        assessed: tuple[str, str | None] | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> Case:
        """A new case of ours as submitted or imported: with an import's verdict and legal
        basis (`assessed`), and the hosting evidence it gave (`evidence`), if any. Built once
        with its final values: an import builds a hundred thousand of them."""
        report_id = str(case_id)
        # 64 random bits: with 32, a hundred thousand cases collide on the unique index.
        local_ref = f"{self.node_id}-{now[:10].replace('-', '')}-{secrets.token_hex(8)}"
        verdict, legal_basis = assessed if assessed is not None else (None, None)
        events = [CaseEvent.ASSESSMENT] if assessed is not None else []
        return Case(
            id=report_id,
            origin=self.node_id,
            local_ref=local_ref,
            seq=1,
            url=intake.url_key,
            url_key=intake.url_key,
            source=source,
            status=entry_status(report_id, events, ours=True).value,
            verdict=verdict,
            category=intake.category,
            legal_basis=legal_basis,
            tlp=intake.tlp.value,
            # A reporter's words are kept as submissions (node.store.submissions), in one place.
            description=None,
            contact=None,
            notes=intake.note,
            duplicates=0,
            received_at=now,
            assessed_at=now if assessed is not None else None,
            updated_at=now,
            trace_status="pending" if evidence is None else "done",
            trace_json=None if evidence is None else orjson.dumps(evidence).decode(),
            traced_at=None if evidence is None else now,
        )

    async def import_batch(
        self,
        items: list[ImportItem],
        *,
        actor: str,
        also: Callable[[Tx], None] | None = None,
    ) -> list[Submitted]:
        """Bulk intake (e.g. an export from another system): one transaction per batch.

        `also` writes in the same transaction (an import run's progress: a run stopped between
        batches is taken up where it stopped, and no committed line is counted twice).

        Items come checked (ImportItem.check); each is submitted, assessed when it carries a
        verdict, and given its hosting country when known, so routing follows at once. The
        batch is written per table (set-based): an import of 100,000 cases is an operator's
        everyday catch-up, and per-case statements made it several times slower.
        """
        results: list[Submitted] = []
        pushed: list[str] = []
        at = self.clock.now()
        stamp = iso(at)
        # Fewer ids than items when some join open cases; one read of the OS generator.
        case_ids = iter(new_ids(at, len(items)))

        def import_txn(conn: Tx) -> None:
            open_cases = self.store.open_by_urls(conn, [i.intake.url_key for i in items])
            duplicates: dict[str, int] = {}
            to_review: list[tuple[str, ImportItem]] = []
            cases: list[Case] = []
            entries: list[audit.Entry] = []
            # The lines' hashes by case: those of cases new in this batch travel in the
            # version their routing writes; cases stored before may have been sent already.
            new_hashes: dict[str, list[HashValue]] = {}
            old_hashes: dict[str, list[HashValue]] = {}
            for item in items:
                key = item.intake.url_key
                if key in open_cases:
                    report_id, count = open_cases[key]
                    count = duplicates.get(report_id, count) + 1
                    duplicates[report_id] = count
                    entries.append(
                        audit.Entry(
                            stamp, actor, "report.duplicate", report_id, {"source": "import"}
                        )
                    )
                    results.append(Submitted(report_id, True, count))
                    if item.intake.hashes:
                        held = new_hashes if report_id in new_hashes else old_hashes
                        held.setdefault(report_id, []).extend(item.intake.hashes)
                    continue
                # Four-eyes: a verdict that needs a reviewer is not written but put before one
                # (below, once its case exists); the case stays new, and nothing routes, until
                # then.
                waits = item.verdict is not None and self.four_eyes.wants_review(
                    item.verdict, item.intake.category
                )
                evidence = (
                    {
                        "override": {
                            "country": item.hosting_country,
                            "reason": "hosting country given at import",
                            "by": actor,
                        }
                    }
                    if item.hosting_country and item.verdict is not None
                    else None
                )
                case = self._new_case(
                    item.intake,
                    case_id=next(case_ids),
                    source="import",
                    now=stamp,
                    assessed=(
                        (item.verdict, item.legal_basis)
                        if item.verdict is not None and not waits
                        else None
                    ),
                    evidence=evidence,
                )
                cases.append(case)
                new_hashes[case.id] = list(item.intake.hashes)
                entries.append(submitted_entry(case, stamp, actor, "import"))
                results.append(Submitted(case.id, False, 0))
                # A case assessed as not illegal is closed by its routing below (which needs
                # the hosting country), and a closed case takes no duplicates: later lines with
                # its URL open a case of their own, as they would one import after another.
                closed_by_routing = (
                    item.verdict == Verdict.NOT_ILLEGAL.value and item.hosting_country is not None
                )
                if not closed_by_routing:
                    open_cases[key] = (case.id, 0)
                if item.verdict is None:
                    continue
                if waits:
                    to_review.append((case.id, item))
                    continue
                entries.append(
                    audit.Entry(
                        stamp,
                        actor,
                        "report.assessed",
                        case.id,
                        {"verdict": item.verdict, "category": item.intake.category},
                    )
                )
            audit.append_many(conn, entries)
            for report_id, values in new_hashes.items():
                check_room(report_id, values)  # before its version is built with them
            pushed.extend(self.router.insert_routed(conn, cases, actor, hashes=new_hashes))
            for report_id, values in new_hashes.items():
                attach_hashes_txn(
                    conn,
                    report_id,
                    values,
                    matcher=self.hash_lists,
                    source="import",
                    at=stamp,
                    actor=actor,
                )
            for report_id, values in old_hashes.items():
                if attach_hashes_txn(
                    conn,
                    report_id,
                    values,
                    matcher=self.hash_lists,
                    source="import",
                    at=stamp,
                    actor=actor,
                ):
                    pushed.extend(self.router.hashes_added_txn(conn, report_id, actor))
            for report_id, item in to_review:
                assert item.verdict is not None
                assert item.intake.category is not None
                self.four_eyes.request_txn(
                    conn,
                    report_id,
                    verdict=item.verdict,
                    category=item.intake.category,
                    legal_basis=item.legal_basis,
                    analyst=actor,
                    person=actor,
                )
            ReportStore.set_duplicates_txn(
                conn, [(count, stamp, report_id) for report_id, count in duplicates.items()]
            )
            if also is not None:
                also(conn)

        await self.db.run(import_txn)
        self.wake(pushed)
        return results


def keep_words_txn(conn: Tx, report_id: str, intake: Intake, source: str, at: str) -> None:
    """A public report's words, the first on its case or a later one, kept as a submission."""
    if source != "public":
        return
    submissions.add_txn(
        conn,
        report_id,
        submissions.Submission(at, intake.description, intake.contact, intake.language, source),
    )


def submitted_entry(case: Case, at: str, actor: str, source: str) -> audit.Entry:
    return audit.Entry(at, actor, "report.submitted", case.id, {"source": source, "url": case.url})
