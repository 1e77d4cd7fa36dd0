"""What a node reads beyond protocol v1 (key document `accepts`), and records for those that don't.

A v1 reader refuses a record type, an enum value or a member it does not know, so a sender sends
each of these only to the peers whose key document announces its name, and writes the rest as v1
does (protocol.md §11.1).
"""

from __future__ import annotations

from collections.abc import Collection

from protocol.records import ContentHash, HashAlgorithm, Report

# The `hashset` record type (§9.10): hash lists shared between hotlines.
HASHSET = "hashset"
# `sha1` as the `alg` of a report's ContentHash.
SHA1 = "sha1"
# The optional `quality` member of a report's ContentHash (PDQ).
PDQ_QUALITY = "pdq-quality"
# Everything this implementation reads, as it announces it (sorted, as it is written).
ACCEPTED: tuple[str, ...] = tuple(sorted((HASHSET, PDQ_QUALITY, SHA1)))


def report_for(report: Report, accepts: Collection[str]) -> Report:
    """`report` as a peer announcing `accepts` can read it: the same object when it can read
    it whole; else without its `sha1` hashes and without the `quality` of its PDQ hashes.

    What is dropped is what the peer could not read at all; the rest of the case goes."""
    sha1 = SHA1 in accepts
    quality = PDQ_QUALITY in accepts
    if all(
        (sha1 or h.alg is not HashAlgorithm.SHA1) and (quality or h.quality is None)
        for h in report.hashes
    ):
        return report
    hashes = tuple(
        h if quality or h.quality is None else ContentHash(alg=h.alg, value=h.value)
        for h in report.hashes
        if sha1 or h.alg is not HashAlgorithm.SHA1
    )
    return report.model_copy(update={"hashes": hashes})
