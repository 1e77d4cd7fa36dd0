"""The node's own keys while it runs: one holder that rotation and revocation replace atomically."""

from __future__ import annotations

from datetime import datetime, timedelta

from keys import NodeKeys, save_keys
from node.config import KeysConfig
from node.datadir import DataDir


class KeyRing:
    def __init__(self, keys: NodeKeys, data_dir: DataDir, policy: KeysConfig) -> None:
        self.current = keys
        self.data_dir = data_dir
        self.policy = policy

    def __call__(self) -> NodeKeys:
        return self.current

    def _save(self, keys: NodeKeys) -> None:
        # Written to disk first: a crash after this still finds the new keys at start.
        save_keys(self.data_dir.keys, keys, self.data_dir.read_secret())
        self.current = keys

    def rotate(self, now: datetime) -> NodeKeys:
        keys = self.current.rotate(
            now,
            timedelta(days=self.policy.validity_days),
            timedelta(days=self.policy.overlap_days),
        ).prune(now)
        self._save(keys)
        return keys

    def due_for_rotation(self, now: datetime) -> bool:
        newest = self.current.current_signing(now).validity.not_before
        return now - newest >= timedelta(days=self.policy.rotate_every_days)

    def revoke(self, kid: str, now: datetime) -> NodeKeys:
        keys = self.current.revoke(kid)
        usable = any(
            k.validity.covers(now) and k.kid not in keys.revoked for k in keys.signing
        ) and any(k.validity.covers(now) and k.kid not in keys.revoked for k in keys.encryption)
        if not usable:
            # Never leave the node without a usable key: rotate at once, no overlap.
            keys = keys.rotate(now, timedelta(days=self.policy.validity_days), timedelta(0))
        self._save(keys)
        return keys
