"""An in-memory replay guard: msg_ids seen per sender, forgotten once outside the time window."""

from __future__ import annotations

from datetime import datetime


class MemoryReplayGuard:
    """Enough for tests and as a write-through cache in front of the node's store."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], datetime] = {}

    def seen(self, sender: str, msg_id: str) -> bool:
        return (sender, msg_id) in self._seen

    def remember(self, sender: str, msg_id: str, created_at: datetime) -> None:
        self._seen[(sender, msg_id)] = created_at

    def prune(self, older_than: datetime) -> int:
        """Forget ids created before `older_than` (the open window refuses them anyway)."""
        stale = [key for key, created in self._seen.items() if created < older_than]
        for key in stale:
            del self._seen[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._seen)
