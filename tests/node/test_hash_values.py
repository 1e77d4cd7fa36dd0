"""Hash values as people write them: every type read back, every kind of bad value refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import InvalidInput
from node.hashes.values import DIGEST_BYTES, PDQ_MIN_QUALITY, HashValue, parse_hash
from protocol.records import HashAlgorithm


@given(
    alg=st.sampled_from(list(DIGEST_BYTES)),
    data=st.data(),
)
def test_every_value_reads_back_from_its_text(alg: HashAlgorithm, data: st.DataObject) -> None:
    digest = data.draw(st.binary(min_size=DIGEST_BYTES[alg], max_size=DIGEST_BYTES[alg]))
    quality = data.draw(st.none() | st.integers(0, 100)) if alg is HashAlgorithm.PDQ else None
    value = HashValue(alg, digest, quality)
    assert parse_hash(value.text) == value
    assert parse_hash(value.text.upper().replace("0X", "0x")).digest == digest


def test_type_is_case_insensitive_and_value_lowercased() -> None:
    value = parse_hash("SHA256:" + "AB" * 32)
    assert value.text == "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "a hash is written TYPE:VALUE"),
        ("crc32:00", "unknown hash type 'crc32'"),
        ("sha256:" + "g" * 64, "sha256 value must be hexadecimal"),
        ("sha256:" + "a" * 63, "sha256 value must be 64 hexadecimal digits (got 63)"),
        ("md5:" + "a" * 40, "md5 value must be 32 hexadecimal digits (got 40)"),
        ("sha1:" + "a" * 64, "sha1 value must be 40 hexadecimal digits (got 64)"),
        ("pdq:" + "a" * 64 + ":101", "PDQ quality must be a whole number from 0 to 100"),
        ("pdq:" + "a" * 64 + ":-1", "PDQ quality must be a whole number from 0 to 100"),
        ("pdq:" + "a" * 64 + ":x", "PDQ quality must be a whole number from 0 to 100"),
        ("sha256:" + "a" * 64 + ":90", "only a pdq hash carries a quality"),
        ("sha256:" + "a" * 5000, "a hash is at most 200 characters"),
    ],
)
def test_each_bad_value_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_hash(text)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_a_non_text_hash_is_refused() -> None:
    with pytest.raises(InvalidInput, match="a hash must be text"):
        parse_hash(12)


def test_low_quality_pdq_is_kept_but_not_matchable() -> None:
    low = parse_hash(f"pdq:{'a' * 64}:{PDQ_MIN_QUALITY - 1}")
    assert not low.matchable
    assert low.unmatched_reason is not None
    assert parse_hash(f"pdq:{'a' * 64}:{PDQ_MIN_QUALITY}").matchable
    assert parse_hash(f"pdq:{'a' * 64}").matchable  # no quality given: matched
