"""`make demo` tells its whole story, finishes well under two minutes and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.support.cluster import REPO


def serving_processes() -> set[str]:
    listing = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return {
        line.split(None, 1)[0]
        for line in listing.splitlines()
        if "-m node serve" in line and "hotline-demo-" in line
    }


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
