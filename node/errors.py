"""Typed node errors; each maps to one problem+json type and an HTTP status in one middleware."""

from __future__ import annotations

PROBLEM_BASE = "https://hotline-node.org/problems/"


class NodeError(Exception):
    """Base class: a user-facing error with a stable problem type and a one-line message."""

    status = 500
    kind = "internal"
    title = "Internal error"
    # Whether the message may be written to the log when the error is a server error.
    logged = True

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

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
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


class SignatureRefused(NodeError):
    status = 401
    kind = "request-signature"
    title = "Request signature refused"
