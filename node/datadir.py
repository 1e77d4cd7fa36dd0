"""The data directory layout: config, keys, key secret, database — and creating it (`init`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from keys import NodeKeys, generate_secret, save_keys
from keys.storage import read_private_file, write_private_file
from node.clock import Clock
from node.config import CONFIG_FILE, NodeConfig, render_config
from node.errors import ConfigError

DATA_DIR_ENV = "HOTLINE_NODE_DATA_DIR"
SECRET_FILE_ENV = "HOTLINE_NODE_KEY_SECRET_FILE"  # noqa: S105 - a variable name
DEFAULT_DATA_DIR = "./hotline-data"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def resolve(cls, given: str | None) -> DataDir:
        return cls(Path(given or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def secret(self) -> Path:
        # Kept outside keys/ so that a copy of the key directory alone is useless; operators may
        # move it elsewhere entirely (e.g. a separate volume) with the environment variable.
        override = os.environ.get(SECRET_FILE_ENV)
        return Path(override) if override else self.root / "key-secret"

    @property
    def database(self) -> Path:
        return self.root / "node.sqlite3"

    def read_secret(self) -> bytes:
        return read_private_file(self.secret)


def create_data_dir(data_dir: DataDir, config: NodeConfig, clock: Clock) -> NodeKeys:
    """Write config, key secret and keys. Refuses to touch an existing node."""
    if data_dir.config.exists() or data_dir.keys.exists():
        raise ConfigError(f"{data_dir.root} already holds a node; refusing to overwrite it")
    data_dir.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir.root, 0o700)
    secret = generate_secret()
    write_private_file(data_dir.secret, secret)
    keys = NodeKeys.generate(clock.now(), timedelta(days=config.keys.validity_days))
    save_keys(data_dir.keys, keys, secret)
    write_private_file(data_dir.config, render_config(config).encode("utf-8"))
    return keys


def loose_modes(data_dir: DataDir) -> list[str]:
    """What group or others may read or write: the data directory itself and the database with
    its WAL files (key files are refused on load already, in keys/storage.py)."""
    found = []
    paths = [data_dir.root, data_dir.database]
    paths += [data_dir.database.with_name(data_dir.database.name + s) for s in ("-wal", "-shm")]
    for path in paths:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            wanted = "0700" if path.is_dir() else "0600"
            found.append(f"{path} is mode {mode:04o}; it should be {wanted} (chmod {wanted[1:]})")
    return found
