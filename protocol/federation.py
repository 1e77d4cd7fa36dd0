"""The federation API bodies: a pushed transaction, its per-item answer, a pulled outbox page."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from keys.thumbprint import b64url, b64url_decode
from protocol.envelope import MAX_ENVELOPE_BYTES

MAX_BATCH = 500
# Base64 grows 4/3; a full batch of maximal envelopes plus JSON framing.
# Bodies larger than this are refused before parsing (typical batches are far below it).
MAX_TRANSACTION_BYTES = 16 * 1024 * 1024
TXN_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
Frame = Annotated[str, Field(min_length=1, max_length=MAX_ENVELOPE_BYTES * 4 // 3 + 4)]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ItemStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class TransactionRequest(_Body):
    envelopes: list[Frame] = Field(min_length=1, max_length=MAX_BATCH)


class ItemResult(_Body):
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    status: ItemStatus
    error: str | None = None


class TransactionResponse(_Body):
    txn_id: Annotated[str, Field(pattern=TXN_ID_PATTERN)]
    results: list[ItemResult]
    receipt: Frame | None = None


class PulledEnvelope(_Body):
    seq: Annotated[int, Field(ge=1)]
    frame: Frame


class OutboxPage(_Body):
    v: Literal[1] = 1
    envelopes: list[PulledEnvelope]
    next_after: Annotated[int, Field(ge=0)]
    more: bool


def encode_frame(frame: bytes) -> str:
    return b64url(frame)


def decode_frame(text: str) -> bytes:
    """Strict: only canonical unpadded base64url, so one frame has one spelling."""
    return b64url_decode(text)
