"""The HTTP client one node uses to talk to another: key documents, push, pull (signed)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

import aiohttp
import orjson
from pydantic import ValidationError
from yarl import URL

from keys import KeyDocument, KeyDocumentError, SigningKey, verify_key_document
from keys.document import MAX_KEY_DOCUMENT_BYTES
from protocol.federation import (
    MAX_TRANSACTION_BYTES,
    OutboxPage,
    TransactionRequest,
    TransactionResponse,
    encode_frame,
)
from protocol.httpsig import SignedRequest, sign_request
from protocol.recovery import RecoveryPage

KEY_DOCUMENT_PATH = "/.well-known/hotline-node"
MAX_RESPONSE_BYTES = MAX_TRANSACTION_BYTES


class PeerError(Exception):
    """Talking to a peer failed; `retryable` says whether backing off and retrying can help."""

    retryable = True


class PeerUnreachable(PeerError):
    """Connection refused, reset, timed out: the peer is down or the network is."""


class PeerRefused(PeerError):
    """The peer answered with an error status."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(f"peer answered {status}: {detail}")
        self.status = status
        # 4xx other than 408/429 will not get better by retrying the same request.
        self.retryable = status >= 500 or status in (408, 429)
        # When the peer said to try again (Retry-After, in seconds: a 507 from a full disk,
        # a 429): a temporary condition with an end it knows better than our backoff does.
        self.retry_after = retry_after if self.retryable else None


class PeerProtocolError(PeerError):
    """The peer's answer is not what the protocol says (bad JSON, bad document, wrong id)."""


def authority(endpoint: str) -> str:
    """RFC 9421 @authority of an endpoint: host, plus the port when it is not the default."""
    url = URL(endpoint)
    host = (url.host or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(url.scheme)
    if url.port is not None and url.port != default:
        return f"{host}:{url.port}"
    return host


def signed_headers(
    method: str, url: str, body: bytes, *, node_id: str, key: SigningKey, now: datetime
) -> dict[str, str]:
    """Headers of a request signed the federation way (RFC 9421), for `url` as its destination.

    Used for peers and for national webhooks alike, so that both can verify us the same way.
    """
    target = URL(url)
    query = target.raw_query_string
    signed = SignedRequest(
        method, authority(url), target.raw_path or "/", f"?{query}" if query else "?", body
    )
    headers = sign_request(
        signed, node_id=node_id, key=key, nonce=secrets.token_urlsafe(18), now=now
    )
    headers["Content-Type"] = "application/json"
    return headers


class PeerClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        node_id: str,
        signing_key: Callable[[], SigningKey],
        clock: Callable[[], datetime],
    ) -> None:
        self.session = session
        self.node_id = node_id
        self.signing_key = signing_key
        self.clock = clock

    async def _request(
        self, method: str, endpoint: str, path: str, query: dict[str, str], body: bytes
    ) -> bytes:
        url = endpoint.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
        headers = signed_headers(
            method, url, body, node_id=self.node_id, key=self.signing_key(), now=self.clock()
        )
        try:
            async with self.session.request(method, url, data=body, headers=headers) as response:
                data = await _read_capped(response.content, MAX_RESPONSE_BYTES)
                if response.status >= 400:
                    raise PeerRefused(
                        response.status,
                        _detail(data),
                        _seconds(response.headers.get("Retry-After")),
                    )
                return data
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise PeerUnreachable(f"{endpoint}: {type(exc).__name__}: {exc}") from exc

    async def fetch_key_document(
        self, endpoint: str, fingerprint: str
    ) -> tuple[KeyDocument, bytes]:
        """Fetch and verify a peer's key document against the fingerprint pinned for it."""
        url = endpoint.rstrip("/") + KEY_DOCUMENT_PATH
        try:
            async with self.session.get(url) as response:
                data = await _read_capped(response.content, MAX_KEY_DOCUMENT_BYTES)
                if response.status != 200:
                    raise PeerRefused(response.status, _detail(data))
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise PeerUnreachable(f"{endpoint}: {type(exc).__name__}: {exc}") from exc
        try:
            document = verify_key_document(data, pinned_fingerprint=fingerprint)
        except KeyDocumentError as exc:
            raise PeerProtocolError(f"key document from {endpoint} refused: {exc}") from exc
        return document, data

    async def push(self, endpoint: str, txn_id: str, frames: list[bytes]) -> TransactionResponse:
        body = orjson.dumps(
            TransactionRequest(envelopes=[encode_frame(f) for f in frames]).model_dump()
        )
        data = await self._request(
            "POST", endpoint, f"/federation/v1/transactions/{txn_id}", {}, body
        )
        try:
            return TransactionResponse.model_validate_json(data)
        except ValidationError as exc:
            raise PeerProtocolError(
                f"malformed transaction response: {exc.errors()[0]['msg']}"
            ) from exc

    async def pull(self, endpoint: str, after: int, limit: int) -> OutboxPage:
        query = {"after": str(after), "limit": str(limit)}
        data = await self._request("GET", endpoint, "/federation/v1/outbox", query, b"")
        try:
            return OutboxPage.model_validate_json(data)
        except ValidationError as exc:
            raise PeerProtocolError(f"malformed outbox page: {exc.errors()[0]['msg']}") from exc

    async def recover(self, endpoint: str, after: int, limit: int) -> RecoveryPage:
        """The records we gave this peer, as we signed them (we were restored: §13.8)."""
        query = {"after": str(after), "limit": str(limit)}
        data = await self._request("GET", endpoint, "/federation/v1/recover", query, b"")
        try:
            return RecoveryPage.model_validate_json(data)
        except ValidationError as exc:
            raise PeerProtocolError(f"malformed recovery page: {exc.errors()[0]['msg']}") from exc


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body (read(n) returns only what has arrived), refused past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PeerProtocolError(f"peer response is larger than {limit} bytes")
    return b"".join(chunks)


def _seconds(value: str | None) -> int | None:
    """Retry-After as a number of seconds (the HTTP-date form is not used between nodes)."""
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return int(value.strip())


def _detail(data: bytes) -> str:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return str(body)[:300]
