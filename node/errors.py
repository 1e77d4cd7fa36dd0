"""Typed node errors, one problem+json type each, with messages as translatable templates."""

from __future__ import annotations

import errno
from collections.abc import Callable
from enum import Enum

PROBLEM_BASE = "https://hotline-node.org/problems/"

Gettext = Callable[[str], str]


def N_(template: str) -> str:  # the gettext convention for "mark, translate later"
    """Marks an English message template for the console's catalogue; returns it unchanged.

    Babel extracts the strings given to N_ (tests/console/test_i18n.py checks that each has a
    French translation in node/console/locale/fr/LC_MESSAGES/messages.po).
    """
    return template


def _english(text: str) -> str:
    return text


class Sentence:
    """A sentence for a person: an English template marked with N_ and its named parameters.

    str() is the English text. render(gettext) is the sentence in another language: the
    template through the catalogue, and so is every parameter that is vocabulary (an enum
    member, looked up by its value: a status, a role) or a sentence itself (a Sentence, a
    NodeError); other parameters (ids, names, numbers, what the person typed) are shown as given.
    """

    __slots__ = ("params", "template")

    def __init__(self, template: str, /, **params: object) -> None:
        self.template = template
        self.params = params

    def render(self, gettext: Gettext = _english) -> str:
        # gettext("") is a catalogue's header, never a message.
        text = gettext(self.template) if self.template else ""
        if not self.params:
            return text
        values = {name: _rendered(value, gettext) for name, value in self.params.items()}
        try:
            return text.format(**values)
        except (KeyError, IndexError, ValueError):
            # A translation naming a parameter the template lacks: the English beats a crash
            # (tests/console/test_i18n.py keeps the catalogue's parameters right).
            return self.template.format(**values)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"Sentence({self.template!r}, **{self.params!r})"


def _rendered(value: object, gettext: Gettext) -> object:
    if isinstance(value, Sentence):
        return value.render(gettext)
    if isinstance(value, NodeError):
        return value.message.render(gettext)
    if isinstance(value, Enum):
        return gettext(str(value.value))
    return value


class NodeError(Exception):
    """Base class: a user-facing error with a stable problem type and a one-line message.

    Raised as `Conflict(N_("report {report} is {status}"), report=..., status=...)`: str() is
    the English text (the CLI, problem+json, logs); the console renders `message` in the
    person's language. A plain string still works, untranslated.
    """

    status = 500
    kind = "internal"
    title = "Internal error"
    # Whether the message may be written to the log when the error is a server error.
    logged = True

    def __init__(self, template: str | Sentence, /, **params: object) -> None:
        self.message = template if isinstance(template, Sentence) else Sentence(template, **params)
        super().__init__(str(self.message))

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.kind


class InvalidInput(NodeError):
    status = 422
    kind = "invalid-input"
    title = "Invalid input"


class MalformedRequest(NodeError):
    status = 400
    kind = "malformed-request"
    title = "Malformed request"


class PayloadTooLarge(NodeError):
    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class Unauthorized(NodeError):
    status = 401
    kind = "unauthorized"
    title = "Missing or invalid credentials"


class Forbidden(NodeError):
    status = 403
    kind = "forbidden"
    title = "Not allowed for this role"


class NotFound(NodeError):
    status = 404
    kind = "not-found"
    title = "Not found"


class Conflict(NodeError):
    status = 409
    kind = "conflict"
    title = "Conflict with the current state"


class RateLimited(NodeError):
    status = 429
    kind = "rate-limited"
    title = "Too many requests"

    def __init__(self, template: str | Sentence, retry_after: int, /, **params: object) -> None:
        super().__init__(template, **params)
        self.retry_after = retry_after


class ConfigError(NodeError):
    status = 500
    kind = "config"
    title = "Configuration error"


class StoreError(NodeError):
    status = 500
    kind = "store"
    title = "Storage error"


class RequestTimeout(NodeError):
    status = 408
    kind = "request-timeout"
    title = "The request was not sent in time"


class UpstreamError(NodeError):
    status = 502
    kind = "upstream"
    title = "An upstream service failed"
    # Its message can name a reported host (a DNS or RDAP failure): not for the log.
    logged = False


class DirectoryRefused(NodeError):
    """A member directory's root or list that does not verify (protocol.md §14.4): nothing
    changed, and the list held (if any) stays in force. `refusal` is the word for logs."""

    status = 422
    kind = "directory-refused"
    title = "Member directory refused"

    def __init__(self, template: str | Sentence, refusal: str, /, **params: object) -> None:
        super().__init__(template, **params)
        self.refusal = refusal


class SignatureRefused(NodeError):
    status = 401
    kind = "request-signature"
    title = "Request signature refused"


class StorageFull(NodeError):
    """The file system holding the node's data is full: new work is refused, nothing is lost.

    A temporary condition, not a fault of the request: whoever sent it (an analyst, the
    public form, a peer's push) may send it again once space is freed. What the node had
    accepted before stays: the transaction that hit the full disk rolled back whole.
    """

    status = 507
    kind = "storage-full"
    title = "Insufficient storage"
    # Seconds a client may wait before trying again (Retry-After).
    retry_after = 60

    def __init__(self, template: str | Sentence | None = None, /, **params: object) -> None:
        super().__init__(template if template is not None else STORAGE_FULL, **params)


STORAGE_FULL = N_(
    "the node's disk is full: nothing was saved, and what was saved before is kept;"
    " try again once the operator has freed space"
)


def is_disk_full(exc: BaseException) -> bool:
    """An operating-system error saying the file system has no space left (or quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
