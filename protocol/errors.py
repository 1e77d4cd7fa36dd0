"""Typed protocol errors; each carries the HTTP status a server should answer with."""

from __future__ import annotations

from enum import StrEnum


class ProtocolError(Exception):
    """Base class for protocol errors."""

    status = 400


class RecordError(ProtocolError):
    """A record is malformed: unknown type, unknown field, wrong value, or not canonical."""

    status = 422


class SealError(ProtocolError):
    """We cannot seal: our key or the recipient's key is unusable, or the record is too big."""

    status = 500


class OpenFailure(StrEnum):
    """Why an envelope did not open. For our own log only: never sent to the peer."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    VERSION = "version"
    SUITE = "suite"
    DOWNGRADE = "downgrade"
    WRONG_RECIPIENT = "wrong_recipient"
    UNKNOWN_SENDER = "unknown_sender"
    SENDER_KEY = "sender_key"
    RECIPIENT_KEY = "recipient_key"
    STALE = "stale"
    FUTURE = "future"
    REPLAY = "replay"
    DECRYPT = "decrypt"
    SIGNATURE = "signature"
    PAYLOAD = "payload"


class OpenError(ProtocolError):
    """An envelope could not be opened.

    The message is the same whatever went wrong, so that a sender learns nothing it could use as
    an oracle; `reason` and `detail` say what happened, for the receiving node's own log.
    """

    status = 400
    PUBLIC_MESSAGE = "envelope could not be opened"

    def __init__(self, reason: OpenFailure, detail: str = "") -> None:
        super().__init__(self.PUBLIC_MESSAGE)
        self.reason = reason
        self.detail = detail
