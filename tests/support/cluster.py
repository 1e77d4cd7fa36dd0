"""Real node processes on loopback: init, serve, kill, restart, and HTTP calls to them.

Used by the end-to-end tests, the sync benchmark and the demo (no pytest import here).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError, URLError

from node.config import parse_config, render_config

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "node", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"hotline-node {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def cli_json(data_dir: Path, *args: str) -> Any:
    return json.loads(cli(data_dir, *args, "--json").stdout)


@dataclass
class NodeProcess:
    node_id: str
    country: str
    root: Path
    dns: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    analyst: str = ""
    operator: str = ""
    fingerprint: str = ""
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def init(self, sections: dict[str, Any] | None = None, **federation: Any) -> None:
        """Initialise the data dir; `sections` adds node.toml tables (channels, notices...)."""
        cli(
            self.root,
            "init",
            "--node-id",
            self.node_id,
            "--country",
            self.country,
            "--endpoint",
            self.url,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--dns-server",
            self.dns,
        )
        path = self.root / "node.toml"
        raw = tomllib.loads(path.read_text())
        raw["federation"] = {**raw.get("federation", {}), "sweep_seconds": 1, **federation}
        # Cases route as soon as they are assessed unless a test asks for four-eyes review.
        raw["console"] = {"four_eyes": []}
        for name, table in (sections or {}).items():
            raw[name] = {**raw.get(name, {}), **table}
        path.write_text(render_config(parse_config(raw)))
        self.analyst = cli_json(
            self.root, "tokens", "create", "--role", "analyst", "--name", "analyst"
        )["token"]
        self.operator = cli_json(
            self.root, "tokens", "create", "--role", "operator", "--name", "operator"
        )["token"]
        self.fingerprint = cli_json(self.root, "keys", "show")["fingerprint"]

    def start(self, timeout: float = 20.0) -> None:
        # In the data directory unless the test chose a place (e.g. off a disk it fills up).
        if self.log_path is None:
            self.log_path = self.root / "serve.log"
        with self.log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor; ours closes here.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node", "serve", "--data-dir", str(self.root)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.node_id} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if self.get("/healthz", token=None)[0] == 200:
                    return
            except (URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.node_id} did not start in {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def _call(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urlrequest.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urlrequest.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str, token: str | None = "") -> tuple[int, Any]:
        return self._call("GET", path, None, self.analyst if token == "" else token)

    def post(self, path: str, body: Any, token: str | None = "") -> tuple[int, Any]:
        return self._call("POST", path, body, self.analyst if token == "" else token)

    def add_peer(self, other: NodeProcess, *extra: str) -> dict[str, Any]:
        """`hotline-node peers add`, as the README teaches it, on this node (serving or not)."""
        result = cli(
            self.root,
            "peers",
            "add",
            "--node-id",
            other.node_id,
            "--country",
            other.country,
            "--endpoint",
            other.url,
            # Two words, as people type it: a fingerprint that begins with "-" (1 in 64) is
            # still the value (the parser takes a thumbprint's shape as one).
            "--fingerprint",
            other.fingerprint,
            *extra,
            "--json",
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.node_id} could not add {other.node_id}: {result.stderr}")
        peer: dict[str, Any] = json.loads(result.stdout)
        return peer

    def submit_and_assess(self, url: str, category: str = "csam") -> str:
        status, body = self.post("/api/v1/reports", {"url": url, "category": category})
        if status not in (200, 201):
            raise RuntimeError(f"submit failed: {body}")
        report_id: str = body["id"]
        status, body = self.post(
            f"/api/v1/reports/{report_id}/assessment",
            {
                "verdict": "baseline",
                "category": category,
                "legal_basis": "baseline (INTERPOL criteria)",
            },
        )
        if status != 200:
            raise RuntimeError(f"assessment failed: {body}")
        return report_id

    def report(self, report_id: str) -> dict[str, Any] | None:
        status, body = self.get(f"/api/v1/reports/{report_id}")
        return body if status == 200 else None


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")
