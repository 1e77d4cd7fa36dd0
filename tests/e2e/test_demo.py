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


def test_demo_keep_leaves_signed_in_consoles_until_ctrl_c() -> None:
    """`make demo KEEP=1`: the nodes stay up with people to sign in as; Ctrl-C ends it all."""
    before = serving_processes()
    demo = subprocess.Popen(
        [sys.executable, "demo/run.py", "--keep"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        logins = []
        deadline = time.monotonic() + 150
        for line in demo.stdout:
            found = re.search(r"(http://127\.0\.0\.1:\d+)/console/\s+(\w+) .* password (\S+)", line)
            if found:
                logins.append(found.groups())
            if "the pages need no JavaScript" in line:
                break
            assert time.monotonic() < deadline
        assert len(logins) == 9  # three people on each of the three nodes
        base, name, password = logins[0]
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
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
    assert demo.returncode == 0, rest[-2000:]
    assert rest.count("stopped (exit 0)") == 3
    assert "nothing left running" in rest
    assert serving_processes() <= before
