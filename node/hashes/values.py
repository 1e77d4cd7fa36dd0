"""One hash value as people write it (`TYPE:VALUE`, `pdq:HEX:QUALITY`) and as the node keeps it.

The one place that decides what a hash value is, whatever the entry (command line, import, API,
console, a hash list, a peer's record): the digest is kept as raw bytes, compared exactly for
the cryptographic types and by Hamming distance for PDQ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.errors import N_, InvalidInput
from protocol.records import HashAlgorithm

# Bytes of each digest: MD5 128 bits, SHA-1 160, SHA-256 256, PDQ 256.
DIGEST_BYTES: dict[HashAlgorithm, int] = {
    HashAlgorithm.MD5: 16,
    HashAlgorithm.SHA1: 20,
    HashAlgorithm.SHA256: 32,
    HashAlgorithm.PDQ: 32,
}
# Meta's guidance for PDQ: hashes of quality 49 or less carry too little of the image (flat or
# tiny pictures) and match unrelated ones, so they are kept but never matched.
PDQ_MIN_QUALITY = 50
PDQ_DEFAULT_MAX_DISTANCE = 31
_HEX = re.compile(r"[0-9a-fA-F]*")
MAX_HASH_TEXT = 200


@dataclass(frozen=True, slots=True)
class HashValue:
    alg: HashAlgorithm
    digest: bytes
    quality: int | None = None  # PDQ only: 0-100, as the hasher reported it (None: not given)

    @property
    def hex(self) -> str:
        return self.digest.hex()

    @property
    def text(self) -> str:
        """`TYPE:VALUE`, or `pdq:HEX:QUALITY`: what `parse_hash` reads back."""
        if self.quality is None:
            return f"{self.alg.value}:{self.hex}"
        return f"{self.alg.value}:{self.hex}:{self.quality}"

    @property
    def matchable(self) -> bool:
        """False for a PDQ hash of low quality: kept, shown, never matched."""
        return self.quality is None or self.quality >= PDQ_MIN_QUALITY

    @property
    def unmatched_reason(self) -> str | None:
        if self.matchable:
            return None
        return N_("PDQ quality {quality} is below {minimum}: kept, but never matched")


def parse_hash(text: object) -> HashValue:
    """`TYPE:VALUE` (`sha256`, `sha1`, `md5`, `pdq`) or `pdq:HEX:QUALITY`, or InvalidInput
    saying in one line what is wrong."""
    if not isinstance(text, str):
        raise InvalidInput(N_("a hash must be text such as sha256:HEX"))
    if len(text) > MAX_HASH_TEXT:
        raise InvalidInput(N_("a hash is at most {limit} characters"), limit=MAX_HASH_TEXT)
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        raise InvalidInput(
            N_("a hash is written TYPE:VALUE, TYPE one of {types} (got {value!r:.40})"),
            types=_TYPES,
            value=text,
        )
    try:
        alg = HashAlgorithm(kind.lower())
    except ValueError:
        raise InvalidInput(
            N_("unknown hash type {kind!r:.20}: one of {types}"), kind=kind, types=_TYPES
        ) from None
    quality: int | None = None
    if alg is HashAlgorithm.PDQ:
        rest, sep, quality_text = rest.partition(":")
        if sep:
            quality = parse_quality(quality_text)
    elif ":" in rest:
        raise InvalidInput(N_("only a pdq hash carries a quality (pdq:HEX:QUALITY)"))
    return HashValue(alg, parse_digest(alg, rest), quality)


def parse_digest(alg: HashAlgorithm, hex_text: str) -> bytes:
    size = DIGEST_BYTES[alg]
    if not _HEX.fullmatch(hex_text):
        raise InvalidInput(
            N_("{kind} value must be hexadecimal (got {value!r:.40})"),
            kind=alg.value,
            value=hex_text,
        )
    if len(hex_text) != 2 * size:
        raise InvalidInput(
            N_("{kind} value must be {digits} hexadecimal digits (got {count})"),
            kind=alg.value,
            digits=2 * size,
            count=len(hex_text),
        )
    return bytes.fromhex(hex_text)


def parse_quality(text: object) -> int:
    value = text.strip() if isinstance(text, str) else text
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise InvalidInput(N_("PDQ quality must be a whole number from 0 to 100"))
    quality = int(value)
    if not 0 <= quality <= 100:
        raise InvalidInput(N_("PDQ quality must be a whole number from 0 to 100"))
    return quality


_TYPES = ", ".join(alg.value for alg in DIGEST_BYTES)
