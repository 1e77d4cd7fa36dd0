"""Browser fixtures: Debian's chromium driven by Selenium, against real node processes.

The browser is the one Debian ships (`apt-get install chromium chromium-driver`, done by .ci/run);
nothing is downloaded. Without it the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.support.cluster import NodeProcess, cli_json
from tests.support.dns_server import ZoneDnsServer
from tests.support.nodes import ZONE

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
# Accessibility problems that fail a test; axe's "minor" and "moderate" ones are reported only.
BLOCKING = {"serious", "critical"}


def _have_browser() -> bool:
    found = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
    if not found and os.environ.get("CI") == "true":
        # .ci/run installs them: in CI these tests must run, never skip.
        pytest.fail("chromium and chromium-driver are missing in CI (.ci/run installs them)")
    return found


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not _have_browser():
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed"
            " (apt-get install chromium chromium-driver; .ci/run does it)"
        )
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.implicitly_wait(5)  # a page loading after a click is waited for, not raced
    try:
        yield browser
    finally:
        browser.quit()


@dataclass
class Person:
    name: str
    password: str
    totp_secret: str | None

    last_step: int = -1  # the node accepts each code once: a sign-in waits for a new one

    def code(self) -> str:
        assert self.totp_secret is not None
        totp = pyotp.TOTP(self.totp_secret)
        while totp.timecode(datetime.now(UTC)) <= self.last_step:
            time.sleep(1)  # as a person waits for the app's next code
        now = datetime.now(UTC)
        self.last_step = totp.timecode(now)
        return totp.at(now)


@dataclass
class Site:
    """Two real nodes (FR with four-eyes and mandatory TOTP, DE), with people on each."""

    fr: NodeProcess
    de: NodeProcess
    people: dict[str, Person] = field(default_factory=dict)
    shots: Path = Path()
    pages: list[str] = field(default_factory=list)


def add_person(node: NodeProcess, name: str, role: str) -> Person:
    made = cli_json(node.root, "users", "add", name, "--role", role, "--totp")
    return Person(name, made["password"], made["totp_secret"])


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Site]:
    if not _have_browser():
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    root = tmp_path_factory.mktemp("console-cluster")
    with ZoneDnsServer(ZONE) as dns:
        fr = NodeProcess("fr-pdc", "FR", root / "fr-pdc", dns.nameserver)
        de = NodeProcess("de-eco", "DE", root / "de-eco", dns.nameserver)
        try:
            # English until a person chooses (the French default of an FR node has its own test).
            fr.init({"console": {"four_eyes": ["csam"], "totp_required": True, "language": "en"}})
            de.init({"console": {"four_eyes": [], "language": "en"}})
            fr.start()
            de.start()
            fr.add_peer(de)
            de.add_peer(fr)
            site = Site(fr, de, shots=tmp_path_factory.mktemp("console-screenshots"))
            for name, role in (("alice", "analyst"), ("rene", "reviewer"), ("olga", "operator")):
                site.people[name] = add_person(fr, name, role)
            site.people["dora"] = add_person(de, "dora", "analyst")
            yield site
        finally:
            fr.stop()
            de.stop()
    # Printed past pytest's capture, so that a passing run says where the screenshots are.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nconsole screenshots ({len(site.pages)}): {site.shots}")
            for page in site.pages:
                reporter.write_line(f"  {page}")
