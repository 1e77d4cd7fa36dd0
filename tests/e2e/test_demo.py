"""`make demo` tells its whole story, finishes well under two minutes and leaves nothing running."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib import request as urlrequest
from urllib.error import HTTPError
from urllib.parse import urlencode

import pytest

from tests.support.cluster import REPO


def serving_processes() -> set[str]:
    """PIDs of demo nodes, from /proc: `ps` cuts lines at 80 columns off a terminal."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended meanwhile
            continue
        if b"serve" in args and any(b"hotline-demo-" in arg for arg in args):
            found.add(cmdline.parent.name)
    return found


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    before = serving_processes()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "demo/run.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert elapsed < 120
    out = done.stdout
    for decision in ("DOMESTIC", "PEER", "FALLBACK", "CDN", "CLOSED"):
        assert f"decision: {decision}" in out
    assert "content_removed  de-eco" in out
    assert "signed referral" in out
    assert "de bonne foi" in out  # the host notice text is shown
    assert "e-mail to ncb-paris@interpol.example" in out
    assert "e-mail to abuse@cloudflare.com" in out
    assert out.count("stopped (exit 0)") == 3
    assert serving_processes() <= before


class NoRedirect(urlrequest.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def start_demo(*args: str) -> subprocess.Popen[str]:
    """The demo as a non-interactive shell starts a command with `&` (a CI runner, `make demo
    KEEP=1 &`): with SIGINT ignored, a disposition Python keeps unless told otherwise."""
    return subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$@"', "sh", sys.executable, "demo/run.py", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(demo: subprocess.Popen[str], marker: str, seconds: float) -> list[str]:
    assert demo.stdout is not None
    lines = []
    deadline = time.monotonic() + seconds
    for line in demo.stdout:
        lines.append(line)
        if marker in line:
            return lines
        assert time.monotonic() < deadline, "".join(lines)[-2000:]
    raise AssertionError("".join(lines)[-2000:])


def finish(demo: subprocess.Popen[str], signum: int) -> str:
    try:
        demo.send_signal(signum)
        return demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()


def consoles(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """(node, console URL, name, password) for each person step 8 prints."""
    found: list[tuple[str, str, str, str]] = []
    node = url = ""
    for line in lines:
        heading = re.search(r"^  ([\w-]+) \([A-Z]{2}\): (http://127\.0\.0\.1:\d+)/console/$", line)
        if heading:
            node, url = heading.groups()
        person = re.search(r"^    (\w+) +\(\w+ *\) password (\S+)$", line)
        if person:
            name, password = person.groups()
            found.append((node, url, name, password))
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_keep_leaves_signed_in_consoles_until_ctrl_c_or_sigterm(signum: int) -> None:
    """`make demo KEEP=1`: the nodes stay up, each named beside its console, with people to
    sign in as (the operator with TOTP); Ctrl-C or SIGTERM ends it all, even when the demo was
    started with SIGINT ignored (as in the background of a non-interactive shell)."""
    before = serving_processes()
    demo = start_demo("--keep")
    try:
        lines = read_until(demo, "the pages need no JavaScript", 150)
        logins = consoles(lines)
        nodes = [login[0] for login in logins]
        assert nodes == [n for n in ("fr-pointdecontact", "de-eco", "us-ncmec") for _ in "abc"]
        assert [login[2] for login in logins] == ["ana", "rev", "ops"] * 3
        text = "".join(lines)
        assert text.count("TOTP secret ") == 3  # one operator with a second factor per node
        assert "four-eyes is on for csam" in text
        _, base, name, password = logins[0]
        with urlrequest.urlopen(f"{base}/console/sign-in", timeout=10) as response:
            page = response.read().decode()
            cookie = response.headers["Set-Cookie"].split(";")[0]
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        form = urlencode({"name": name, "password": password, "csrf": token[1]}).encode()
        signed_in = urlrequest.Request(
            f"{base}/console/sign-in", data=form, headers={"Cookie": cookie}
        )
        with pytest.raises(HTTPError) as answer:  # the redirect is not followed
            urlrequest.build_opener(NoRedirect).open(signed_in, timeout=10)
        redirect = answer.value
        redirect.close()  # the error carries the open response
        assert redirect.code == 303
        assert redirect.headers["Location"] == "/console/"
        assert redirect.headers["Set-Cookie"].startswith("hln_session=")
        assert len(serving_processes() - before) == 3
    finally:
        rest = finish(demo, signum)
    assert demo.returncode == 0, rest[-2000:]
    assert f"{signal.Signals(signum).name}: stopping" in rest
    assert rest.count("stopped (exit 0)") == 3
    assert "nothing left running" in rest
    assert serving_processes() <= before


def test_demo_stopped_midway_stops_every_node_and_says_so() -> None:
    """Ctrl-C while the story runs: every node already started is stopped, exit status 130."""
    before = serving_processes()
    demo = start_demo()
    try:
        read_until(demo, "== 3.", 120)  # the nodes are up and peered
    finally:
        rest = finish(demo, signal.SIGINT)
    assert demo.returncode == 130, rest[-2000:]
    assert "SIGINT: stopping" in rest
    assert rest.count("stopped (exit 0)") == 3
    assert "demo stopped after" in rest
    assert "Traceback" not in rest
    assert serving_processes() <= before
