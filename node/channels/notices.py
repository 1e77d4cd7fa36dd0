"""The text of notices: DSA Art. 16 host notices, CDN requests, reminders, police e-mails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from node.channels.base import Message
from node.config import NoticesConfig
from node.countries import language_of

# Hosts in these countries get the notice in French; everyone else in English.

CATEGORY_TEXT = {
    "en": {
        "csam": "child sexual abuse material",
        "csem": "child sexual exploitation material",
        "grooming": "grooming of a child for sexual purposes",
        "hate": "illegal hate speech",
        "terrorism": "terrorist content",
        "other": "illegal content",
    },
    "fr": {
        "csam": "contenu pédocriminel (abus sexuels sur mineurs)",
        "csem": "contenu d'exploitation sexuelle de mineurs",
        "grooming": "sollicitation de mineurs à des fins sexuelles",
        "hate": "contenu haineux illicite",
        "terrorism": "contenu à caractère terroriste",
        "other": "contenu illicite",
    },
}

TEXT = {
    "en": {
        "subject": "Notice of illegal content (EU Digital Services Act, Art. 16) — ref {ref}",
        "reminder_subject": "Reminder: illegal content still online — ref {ref}",
        "cdn_subject": "Request for the origin host of illegal content behind your network — "
        "ref {ref}",
        "intro": "We notify you, under Article 16 of Regulation (EU) 2022/2065 (Digital Services "
        "Act), of content hosted on your service that we have assessed as illegal.",
        "reminder_intro": "On {first} we notified you of the content below. It was still "
        "reported as available when this reminder was sent. Please act on it without delay.",
        "cdn_intro": "The content below is served through your network. Please remove it from "
        "your caches, forward this notice to your customer, and tell us the origin host so "
        "that we can notify it directly.",
        "why": "Why it is illegal",
        "where": "Exact location(s)",
        "notifier": "Notifier",
        "notifier_omitted": "The notifier's identity is not given (not required for child "
        "sexual abuse offences, DSA Art. 16(2)(c)).",
        "good_faith": "We state in good faith that the information and allegations in this "
        "notice are accurate and complete.",
        "reply": "Reply to this e-mail, keeping the reference {ref} in the subject, to confirm "
        "receipt and tell us your decision (DSA Art. 16(4)-(5)), including the means of "
        "redress available.",
        "assessed": "assessed as {what}",
        "baseline": "illegal in every country (INTERPOL baseline criteria)",
        "national": "illegal under our national law",
    },
    "fr": {
        "subject": "Notification de contenu illicite (règlement européen sur les services "
        "numériques, art. 16) — réf. {ref}",
        "reminder_subject": "Relance : contenu illicite toujours en ligne — réf. {ref}",
        "cdn_subject": "Demande de l'hébergeur d'origine d'un contenu illicite — réf. {ref}",
        "intro": "Nous vous notifions, au titre de l'article 16 du règlement (UE) 2022/2065 "
        "(règlement sur les services numériques), un contenu hébergé sur votre service que "
        "nous avons qualifié d'illicite.",
        "reminder_intro": "Le {first}, nous vous avons notifié le contenu ci-dessous, toujours "
        "signalé comme accessible à l'envoi de cette relance. Merci d'agir sans délai.",
        "cdn_intro": "Le contenu ci-dessous est distribué par votre réseau. Merci de le retirer "
        "de vos caches, de transmettre cette notification à votre client et de nous indiquer "
        "l'hébergeur d'origine afin que nous puissions le notifier directement.",
        "why": "Motifs de l'illicéité",
        "where": "Localisation(s) exacte(s)",
        "notifier": "Auteur de la notification",
        "notifier_omitted": "L'identité de l'auteur n'est pas indiquée (non requise pour les "
        "infractions d'abus sexuels sur mineurs, art. 16(2)(c)).",
        "good_faith": "Nous déclarons de bonne foi que les informations et allégations de la "
        "présente notification sont exactes et complètes.",
        "reply": "Répondez à ce courriel en conservant la référence {ref} dans l'objet pour "
        "accuser réception et nous faire connaître votre décision (art. 16(4)-(5)), y compris "
        "les voies de recours disponibles.",
        "assessed": "qualifié de {what}",
        "baseline": "illicite dans tous les pays (critères de référence d'INTERPOL)",
        "national": "illicite au regard de notre droit national",
    },
}


# FIRST TLP 2.0 (first.org/tlp): the label is never translated; its definition is.
TLP_WORDS = {
    "en": {
        "red": "For the eyes and ears of individual recipients only, no further disclosure.",
        "amber+strict": "Limited disclosure, restricted to the recipient's organization only.",
        "amber": "Limited disclosure, recipients can only spread this on a need-to-know basis "
        "within their organization and its clients.",
        "green": "Limited disclosure, recipients can spread this within their community.",
        "clear": "Recipients can spread this to the world, there is no limit on disclosure.",
    },
    "fr": {
        "red": "Réservé aux seuls destinataires nommément désignés, aucune diffusion.",
        "amber+strict": "Diffusion limitée, restreinte à l'organisation du destinataire.",
        "amber": "Diffusion limitée, au seul besoin d'en connaître, au sein de l'organisation "
        "du destinataire et de ses clients.",
        "green": "Diffusion limitée, au sein de la communauté du destinataire.",
        "clear": "Diffusion sans restriction.",
    },
}
TEST_WORDS = {
    "en": "TEST MESSAGE — not a real case, no action is needed.",
    "fr": "MESSAGE DE TEST — il ne s'agit pas d'un cas réel, aucune action n'est requise.",
}


def tlp_label(tlp: str) -> str:
    return f"TLP:{tlp.upper()}"


def marking(message: Message, lang: str) -> tuple[str, list[str]]:
    """The subject prefix and the first body lines every notice carries: TEST, then TLP."""
    label = tlp_label(message.tlp)
    prefix = f"[{label}] "
    lines = [f"{label} — {TLP_WORDS[lang][message.tlp]}"]
    if message.test:
        prefix = "TEST " + prefix
        lines.insert(0, TEST_WORDS[lang])
    return prefix, [*lines, ""]


@dataclass(frozen=True)
class NoticeParty:
    node_id: str
    from_address: str
    settings: NoticesConfig


def language_for(country: str | None) -> str:
    return language_of(country)


def reference(message: Message) -> str:
    """A short reference that a host keeps when replying: the case's public reference, or for a
    notice about several cases the notice's own (`reports show REF` resolves it to them)."""
    return message.reference


def build_email(
    message: Message, party: NoticeParty, to: str, now: datetime, first_sent: str | None = None
) -> EmailMessage:
    """A notice a person would accept: reason, exact URLs, notifier, good faith, how to reply."""
    first = message.items[0]
    lang = language_for(first.country) if message.role != "cdn_notice" else "en"
    text = TEXT[lang]
    ref = reference(message)
    if message.reminder:
        subject, intro = text["reminder_subject"], text["reminder_intro"]
    elif message.role == "cdn_notice":
        subject, intro = text["cdn_subject"], text["cdn_intro"]
    else:
        subject, intro = text["subject"], text["intro"]
    prefix, lines = marking(message, lang)
    lines += [intro.format(first=first_sent or "-"), ""]
    lines.append(f"{text['why']}:")
    for item in message.items:
        what = CATEGORY_TEXT[lang].get(item.category or "other", CATEGORY_TEXT[lang]["other"])
        verdict = text.get(item.verdict or "", "")
        basis = f"; {item.legal_basis}" if item.legal_basis else ""
        lines.append(
            f"  - {item.url}: {text['assessed'].format(what=what)}"
            f"{' — ' + verdict if verdict else ''}{basis}"
        )
    lines += ["", f"{text['where']}:"]
    lines += [f"  {item.url}" for item in message.items]
    lines += ["", f"{text['notifier']}:"]
    omit = all(item.category in party.settings.omit_notifier_for for item in message.items)
    if omit:
        lines.append(f"  {text['notifier_omitted']}")
    else:
        settings = party.settings
        for value in (settings.notifier_name, settings.notifier_email, settings.notifier_address):
            if value:
                lines.append(f"  {value}")
    lines += [
        "",
        text["good_faith"],
        "",
        text["reply"].format(ref=ref),
        "",
        f"-- {party.settings.notifier_name or party.node_id} ({party.node_id})",
    ]
    email = EmailMessage()
    email["Subject"] = prefix + subject.format(ref=ref)
    email["From"] = party.from_address
    email["To"] = to
    email["Reply-To"] = party.from_address
    email["Date"] = format_datetime(now)
    email["Message-ID"] = make_msgid(domain=party.from_address.split("@", 1)[1])
    email["X-Hotline-Reference"] = ref
    email["X-Hotline-TLP"] = tlp_label(message.tlp)
    if message.test:
        email["X-Hotline-Test"] = "yes"
    email.set_content("\n".join(lines))
    # After set_content, which replaces every Content-* header.
    email["Content-Language"] = lang
    return email


def build_police_email(
    message: Message, party: NoticeParty, to: str, now: datetime
) -> EmailMessage:
    """For authorities that take e-mail: the facts of the case(s), no DSA wording."""
    ref = reference(message)
    prefix, lines = marking(message, "en")
    lines += [f"Case(s) referred by {party.settings.notifier_name or party.node_id}:", ""]
    for item in message.items:
        lines += [
            f"  reference     {item.report_id}",
            f"  tlp           {tlp_label(item.tlp)}",
            f"  url           {item.url}",
            f"  category      {item.category}   verdict {item.verdict}",
            f"  legal basis   {item.legal_basis or '-'}",
            f"  hosting       {item.country or '-'}   abuse contact {item.abuse_contact or '-'}",
            f"  routing       {item.reason}",
            "",
        ]
    email = EmailMessage()
    email["Subject"] = f"{prefix}Referral of illegal content — ref {ref}"
    email["From"] = party.from_address
    email["To"] = to
    email["Date"] = format_datetime(now)
    email["Message-ID"] = make_msgid(domain=party.from_address.split("@", 1)[1])
    email["X-Hotline-Reference"] = ref
    email["X-Hotline-TLP"] = tlp_label(message.tlp)
    if message.test:
        email["X-Hotline-Test"] = "yes"
    email.set_content("\n".join(lines))
    return email
