"""A full disk on a real node: 507 everywhere new work comes in, nothing lost, and work resumes
by itself once space is freed (a 20 MiB tmpfs the test mounts; the peer is on the normal disk).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError
from urllib.parse import urlencode

import pytest

from node.config import parse_config, render_config
from tests.node.test_openapi import check_response
from tests.support import disk
from tests.support.cluster import NodeProcess, cli, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs of the test's own: what fills it up harms nothing else."""
    try:
        with disk.small_disk(tmp_path / "small-disk") as mount:
            yield mount
    except disk.CannotMount as exc:
        pytest.skip(str(exc))


def call(
    node: NodeProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urlrequest.Request(node.url + path, data=body, headers=headers or {}, method=method)
    try:
        with urlrequest.urlopen(req, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def api_submit(node: NodeProcess, url: str) -> tuple[int, dict[str, str], Any]:
    status, headers, body = call(
        node,
        "POST",
        "/api/v1/reports",
        json.dumps({"url": url, "category": "hate"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {node.analyst}"},
    )
    return status, headers, json.loads(body)


def metric(node: NodeProcess, name: str, labels: str = "") -> float | None:
    _, _, body = call(node, "GET", "/metrics")
    pattern = "^" + re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else None


def case_ids(node: NodeProcess) -> set[str]:
    listed = cli_json(node.root, "reports", "list", "--limit", "500")
    rows = listed["reports"]
    return {row["id"] for row in rows}


def configure(node: NodeProcess, **sections: dict[str, Any]) -> None:
    path = node.root / "node.toml"
    raw = tomllib.loads(path.read_text())
    for name, table in sections.items():
        raw[name] = {**raw.get(name, {}), **table}
    path.write_text(render_config(parse_config(raw)))


def test_a_full_disk_is_answered_507_loses_nothing_and_work_resumes(
    small_disk: Path, tmp_path: Path, dns: ZoneDnsServer
) -> None:
    fr = NodeProcess("fr-pdc", "FR", small_disk / "fr", dns.nameserver)
    de = NodeProcess("de-eco", "DE", tmp_path / "de", dns.nameserver)
    fr.log_path = tmp_path / "fr-serve.log"  # off the full disk, so that it can be read
    try:
        fr.init()
        configure(fr, storage={"warn_free_mb": 10, "check_seconds": 1})
        de.init()
        fr.start()
        de.start()
        fr.add_peer(de)
        de.add_peer(fr)
        password = cli_json(fr.root, "users", "add", "alice", "--role", "analyst")["password"]

        # Work accepted before: cases forwarded to DE, and cases queued for DE while it is down.
        delivered = [fr.submit_and_assess(f"http://de.example/before/{n}") for n in range(3)]
        wait_for(lambda: all(de.report(i) for i in delivered), timeout=30)
        assert de.stop() == 0
        queued = [fr.submit_and_assess(f"http://de.example/queued/{n}") for n in range(4)]
        wait_for(lambda: metric(fr, "hotline_peer_queue_depth", 'peer="de-eco"') == 4)
        before = case_ids(fr)
        assert set(delivered + queued) <= before

        filler = disk.fill(small_disk)

        # The analyst API: 507, problem+json, a stable type, and when to come back.
        status, headers, problem = api_submit(fr, "http://fr.example/refused")
        assert status == 507, problem
        assert headers["Content-Type"].startswith("application/problem+json")
        assert problem["type"] == "https://hotline-node.org/problems/storage-full"
        assert problem["status"] == 507
        assert "disk is full" in problem["detail"]
        assert headers["Retry-After"] == "60"
        check_response("POST", "/api/v1/reports", 507, "application/problem+json", problem)

        # The public API and the public form (French and English), and the console.
        status, _, body = call(
            fr,
            "POST",
            "/api/v1/public/reports",
            json.dumps({"url": "http://fr.example/public", "description": "vu"}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 507
        assert json.loads(body)["type"].endswith("/storage-full")
        check_response(
            "POST", "/api/v1/public/reports", 507, "application/problem+json", json.loads(body)
        )
        for lang, words in (
            ("fr", "Votre signalement n&#39;a pas pu être enregistré"),
            ("en", "Your report could not be saved"),
        ):
            form = urlencode({"lang": lang, "url": "http://fr.example/form", "description": "seen"})
            status, headers, page = call(
                fr,
                "POST",
                "/report",
                form.encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert status == 507
            assert headers["Content-Type"].startswith("text/html")
            assert words in page.decode(), page.decode()[:2000]
            assert "http://fr.example/form" in page.decode()  # what was typed is kept
        assert console_sign_in(fr, "alice", password) == 507

        # The command line: one line, through the serving node.
        result = cli(fr.root, "reports", "submit", "http://fr.example/cli", check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("hotline-node: error: the node's disk is full")

        # A peer pushing to the full node gets 507 for the whole transaction and backs off.
        de.start()
        status, _ = de.post(
            f"/api/v1/reports/{delivered[0]}/actions",
            {"code": "content_removed", "reason": "removed by the host"},
        )
        assert status == 201
        wait_for(lambda: metric(de, "hotline_peer_backoff", 'peer="fr-pdc"') == 1, timeout=30)
        assert "507" in cli_json(de.root, "peers", "show", "fr-pdc")["last_error"]

        # What /metrics and the log say; nothing accepted before is lost.
        wait_for(lambda: metric(fr, "hotline_disk_full") == 1)
        free = metric(fr, "hotline_disk_free_bytes")
        assert free is not None
        assert free < MIB
        assert case_ids(fr) == before
        assert cli(fr.root, "audit", "verify").returncode == 0
        assert metric(fr, "hotline_peer_queue_depth", 'peer="de-eco"') == 4
        wait_for(lambda: "warning below" in fr_log(fr), timeout=10)
        log = fr_log(fr)
        assert "is full" in log
        assert "Traceback" not in log

        filler.unlink()

        # New work again, and the queue to DE and DE's action both arrive, nothing dead.
        def accepted() -> str | None:
            status, _, body = api_submit(fr, "http://fr.example/after")
            return body["id"] if status == 201 else None

        after = wait_for(accepted, timeout=40, interval=1)
        wait_for(lambda: all(de.report(i) for i in queued), timeout=90)
        wait_for(lambda: fr.report(delivered[0])["status"] == "closed", timeout=90)  # type: ignore[index]
        assert case_ids(fr) == before | {after}
        wait_for(lambda: metric(fr, "hotline_peer_queue_depth", 'peer="de-eco"') == 0)
        for node in (fr, de):
            scraped = call(node, "GET", "/metrics")[2].decode()
            assert "hotline_peer_dead_letters_total{" not in scraped
            assert cli(node.root, "audit", "verify").returncode == 0
        assert case_ids(de) == set(delivered + queued)
        assert metric(fr, "hotline_disk_full") == 0
        assert "takes writes again" in fr_log(fr)
        assert "Traceback" not in fr_log(fr)
    finally:
        fr.stop()
        de.stop()


def fr_log(node: NodeProcess) -> str:
    assert node.log_path is not None
    return node.log_path.read_text()


def console_sign_in(node: NodeProcess, name: str, password: str) -> int:
    """Sign in to the console as a browser would; the page's status (the page is checked)."""
    status, headers, page = call(node, "GET", "/console/sign-in")
    assert status == 200
    cookie = SimpleCookie(headers["Set-Cookie"])
    token = next(iter(cookie.values())).value
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.decode())
    assert csrf is not None
    form = urlencode({"csrf": csrf.group(1), "name": name, "password": password, "next": ""})
    status, headers, page = call(
        node,
        "POST",
        "/console/sign-in",
        form.encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"{next(iter(cookie.keys()))}={token}",
        },
    )
    text = page.decode()
    if status == 507:
        # The node is French: the console speaks French unless told otherwise.
        assert "Le disque est plein" in text, text[:2000]
        assert "Rien n\u2019a été enregistré" in text
        assert headers["Retry-After"] == "60"
    return status
