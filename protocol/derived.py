"""The ids both ends derive for `forwarded` and `received` actions (UUID version 5, RFC 9562 §5.5).

The origin records `forwarded` when a peer takes one of its reports, and `received` when the
peer's receipt (or, over pull, its `received` action) says it arrived. The receiver records its
own `received` too. Deriving the id from (report, peer) makes every copy of one fact the same
row: recording it twice, or receiving it after recording it, inserts nothing new.
"""

from __future__ import annotations

import uuid

from protocol.records import ActionCode

# Fixed for protocol version 1; docs/protocol.md §9.8 gives them and the exact name bytes.
FORWARDED_NAMESPACE = uuid.UUID("0b8f5d0e-52c4-4f7e-8d0c-3c1f2a9e7b44")
RECEIVED_NAMESPACE = uuid.UUID("6f1c7d2e-3a51-4c8e-9a7b-0d4e2f8c1b63")
_NAMESPACES = {ActionCode.FORWARDED: FORWARDED_NAMESPACE, ActionCode.RECEIVED: RECEIVED_NAMESPACE}


def derived_name(report_id: uuid.UUID | str, peer: str) -> bytes:
    """The UUIDv5 name: the report id as lowercase hyphenated text, `/`, the peer's node id."""
    return f"{uuid.UUID(str(report_id))}/{peer}".encode()


def derived_action_id(code: ActionCode, report_id: uuid.UUID | str, peer: str) -> uuid.UUID:
    """The id of the `forwarded` or `received` action for `report_id` and `peer`: the node the
    report went to, which is the receiver in both cases (the `by` of `received`)."""
    namespace = _NAMESPACES.get(code)
    if namespace is None:
        raise ValueError(f"only forwarded and received actions have derived ids, not {code}")
    # uuid5 takes the name as text and hashes its UTF-8 bytes: exactly `derived_name`.
    return uuid.uuid5(namespace, derived_name(report_id, peer).decode())
