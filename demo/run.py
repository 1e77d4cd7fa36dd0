"""`make demo`: three hotlines (FR, DE, US) on this machine, every kind of case, a clean stop.

Nothing leaves 127.0.0.1: a local DNS server maps the demo host names to public addresses in
France, Germany, the US, South Africa (no peer hotline there) and a CDN, and no node ever
connects to those addresses — jurisdiction needs only DNS and local IP data.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.cluster import NodeProcess, cli_json, wait_for
from tests.support.dns_server import ZoneDnsServer
from tests.support.rdap_server import RdapStub, ip_network
from tests.support.sinks import SmtpSink, WebhookSink


class LoopThread:
    """The asyncio receivers (RDAP stub, police webhook) run in a thread beside the demo."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def channels(smtp: SmtpSink, webhook: WebhookSink) -> dict[str, Any]:
    mail = {
        "kind": "email",
        "smtp_port": smtp.port,
        "from_address": "signalements@pointdecontact.example",
    }
    return {
        "channels": {
            "pharos": {"kind": "webhook", "roles": ["law_enforcement"], "url": webhook.url},
            "hosts": {**mail, "roles": ["host_notice", "cdn_notice"]},
            "interpol": {**mail, "roles": ["fallback"], "to": "ncb-paris@interpol.example"},
        },
        "notices": {
            "notifier_name": "Point de Contact",
            "notifier_email": "contact@pointdecontact.example",
            "notifier_address": "Paris, France",
            "group_window_seconds": 1,
        },
    }


ZONE: dict[str, dict[str, list[tuple[str, int]]]] = {
    "photos.hebergeur-fr.test": {"A": [("5.39.0.1", 300)]},
    "files.hoster-de.test": {"A": [("88.198.0.1", 300)], "AAAA": [("2a01:4f8::1", 300)]},
    "media.host-us.test": {"A": [("8.8.8.8", 300)]},
    "share.host-za.test": {"A": [("41.0.0.1", 300)]},
    "forum.behind-cdn.test": {"CNAME": [("forum.behind-cdn.test.cdn.cloudflare.net", 60)]},
    "forum.behind-cdn.test.cdn.cloudflare.net": {"A": [("104.16.0.1", 60)]},
    "blog.hoster-de.test": {"A": [("88.198.0.2", 300)]},
}

CASES = [
    (
        "hosted in France (domestic)",
        "http://photos.hebergeur-fr.test/album/17/img_0042.jpg",
        "baseline",
        "csam",
    ),
    (
        "hosted in Germany (peer hotline)",
        "https://files.hoster-de.test/g/a81f3c9e/index.html",
        "baseline",
        "csam",
    ),
    ("hosted in the US (peer hotline)", "http://media.host-us.test/v/8812", "baseline", "csam"),
    ("hosted in South Africa (no peer)", "http://share.host-za.test/f/771", "baseline", "csam"),
    ("behind a CDN", "https://forum.behind-cdn.test/t/5531", "national", "hate"),
    ("not illegal", "http://blog.hoster-de.test/post/12", "not_illegal", "hate"),
]


def say(text: str = "") -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title} " + "=" * max(0, 74 - len(title)))


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "-")) for r in rows)) for c in columns}
    say("  " + "  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        say("  " + "  ".join(str(row.get(c, "") or "-").ljust(widths[c]) for c in columns))


class Stop(Exception):
    """Ctrl-C (SIGINT) or SIGTERM: the demo stops every node and receiver, then ends."""


def stop_on_signals() -> None:
    """SIGINT and SIGTERM both end the demo cleanly, whatever the disposition inherited.

    A process started in the background by a non-interactive shell (`make demo KEEP=1 &`, a CI
    runner) inherits SIGINT ignored, and Python then leaves it ignored: Ctrl-C or `kill -INT`
    would not stop it. SIGTERM would kill the demo at once and leave the three nodes running.
    """

    def stop(signum: int, frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def ignore_signals() -> None:
    """While everything stops: a second Ctrl-C must not leave a node or a receiver behind."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def open_consoles(nodes: list[NodeProcess]) -> None:
    """`make demo KEEP=1`: people on each node, and their consoles, until Ctrl-C or SIGTERM."""
    step("8. The consoles stay open: sign in with these (Ctrl-C stops everything)")
    for node in nodes:
        say(f"  {node.node_id} ({node.country}): {node.url}/console/")
        for name, role in (("ana", "analyst"), ("rev", "reviewer"), ("ops", "operator")):
            # One person per node signs in with a second factor, as `users add --totp` gives.
            extra = ("--totp",) if role == "operator" else ()
            person = cli_json(node.root, "users", "add", name, "--role", role, *extra)
            say(f"    {name:<4} ({role:<8}) password {person['password']}")
            if person.get("totp_secret"):
                say(f"         TOTP secret {person['totp_secret']} (any authenticator app)")
    say("\n  four-eyes is on for csam ([console] four_eyes in node.toml): an analyst's CSAM")
    say("  verdict routes only once a reviewer (rev) confirms it")
    say("\n  open a URL above in a browser on this machine; the pages need no JavaScript")
    say("  (the password shown only sets your own, at the first sign-in)")
    while all(node.process is not None and node.process.poll() is None for node in nodes):
        time.sleep(1)
    say("  a node stopped; stopping the others")


def main(keep: bool = False) -> int:
    started = time.monotonic()
    stop_on_signals()
    interrupted: Stop | None = None
    consoles_open = False
    nodes: list[NodeProcess] = []
    receivers = LoopThread()
    smtp = SmtpSink().start()
    webhook: WebhookSink = receivers.run(WebhookSink().start())
    rdap: RdapStub = receivers.run(RdapStub().start())
    rdap.add_network(
        "5.39.0.0/16", ip_network("5.39.0.0", "5.39.255.255", abuse_email="abuse@hebergeur-fr.test")
    )
    # `init` holds CSAM host notices 48 h for the police; Pharos answers {"cleared": true}, so the
    # notice to the French host goes as soon as the police have the case.
    webhook.reply = {"cleared": True}
    with tempfile.TemporaryDirectory(prefix="hotline-demo-") as tmp, ZoneDnsServer(ZONE) as dns:
        root = Path(tmp)
        try:
            step("1. Three hotlines start their nodes")
            fr = NodeProcess("fr-pointdecontact", "FR", root / "fr", dns.nameserver)
            de = NodeProcess("de-eco", "DE", root / "de", dns.nameserver)
            us = NodeProcess("us-ncmec", "US", root / "us", dns.nameserver)
            sections = channels(smtp, webhook)
            sections["jurisdiction"] = {"rdap_base": rdap.base_url}
            fr.init(sections)
            for node in (de, us):
                node.init()
            for node in (fr, de, us):
                nodes.append(node)  # before it starts: a signal meanwhile still stops it
                node.start()
                say(
                    f"  {node.node_id:<18} {node.country}  {node.url}  identity "
                    f"{node.fingerprint[:16]}…"
                )

            step("2. Operators exchange fingerprints out of band and add each other")
            say("  each runs, on the serving node (it takes effect at once, no restart):")
            say(
                "  $ hotline-node peers add --node-id ID --country CC --endpoint URL"
                " --fingerprint FP"
            )
            for a, b in ((fr, de), (de, fr), (fr, us), (us, fr)):
                a.add_peer(b)
                say(
                    f"  {a.node_id} added {b.node_id}: key document verified against "
                    f"{b.fingerprint[:16]}…"
                )

            step("3. Analysts at Point de Contact submit and assess six reports")
            ids: dict[str, str] = {}
            for label, url, verdict, category in CASES:
                _, body = fr.post("/api/v1/reports", {"url": url, "category": category})
                report_id = body["id"]
                wait_for(
                    lambda rid=report_id: (
                        (fr.report(rid) or {}).get("hosting", {}).get("status")
                        in ("done", "failed")
                    ),
                    timeout=20,
                )
                fr.post(
                    f"/api/v1/reports/{report_id}/assessment",
                    {
                        "verdict": verdict,
                        "category": category,
                        "legal_basis": "Code pénal art. 227-23"
                        if category == "csam"
                        else "Loi 1881 art. 24",
                    },
                )
                ids[label] = report_id
                case = fr.report(report_id) or {}
                hosting, routing = case["hosting"], case["routing"]
                say(f"\n  {label}: {url}")
                for address in hosting["addresses"]:
                    where = (
                        "CDN (no meaningful location)"
                        if address["cdn"]
                        else f"{address['country']} ({address['basis']}, {address['source']})"
                    )
                    say(f"    {address['ip']:<16} -> {where}")
                if hosting["cdn_name"]:
                    say(
                        f"    served through {hosting['cdn_name']}; abuse desk "
                        f"{hosting['abuse_contact']}"
                    )
                say(f"    decision: {routing['decision'].upper()}")
                for target in routing["targets"]:
                    say(f"      -> {target['kind']} {target['name']}: {target['reason']}")

            step("4. The German and US hotlines receive their cases within a second")
            for label, peer in (
                ("hosted in Germany (peer hotline)", de),
                ("hosted in the US (peer hotline)", us),
            ):
                arrived = wait_for(lambda p=peer, rid=ids[label]: p.report(rid), timeout=30)
                say(
                    f"  {peer.node_id} has {ids[label][:8]}…: origin {arrived['origin']}, "
                    f"verdict {arrived['assessment']['verdict']}, routed there as "
                    f"{arrived['routing']['decision']} (its own national channels)"
                )

            step("5. eco (DE) gets the content removed and records it")
            de_case = ids["hosted in Germany (peer hotline)"]
            de.post(
                f"/api/v1/reports/{de_case}/actions",
                {"code": "content_removed", "reason": "host removed it after notice"},
            )
            wait_for(
                lambda: any(
                    a["code"] == "content_removed"
                    for a in (fr.report(de_case) or {}).get("actions", [])
                ),
                timeout=30,
            )
            say("  the outcome is back at Point de Contact; the case timeline there:")
            table((fr.report(de_case) or {})["actions"], ["at", "code", "by", "country"])

            step("6. National channels at Point de Contact (local sinks stand in for them)")
            say(
                "  (the CSAM host notice waits for the police first; Pharos's answer"
                ' {"cleared": true} releases it)'
            )
            wait_for(lambda: len(webhook.received) >= 1 and len(smtp.messages) >= 3, timeout=30)
            referral = json.loads(webhook.received[0][1])
            say(
                f"  police webhook (Pharos) got a signed referral: "
                f"{referral['cases'][0]['url']} ({referral['cases'][0]['category']}); "
                f"Signature-Input {webhook.received[0][0]['Signature-Input'][:40]}…"
            )
            for message, rcpt in zip(smtp.messages, smtp.recipients, strict=True):
                say(f"  e-mail to {', '.join(rcpt)}: {message['Subject']}")
            notice = next(m for m in smtp.messages if "2022/2065" in str(m.get_content()))
            say("\n  the host notice, as the host receives it:\n")
            for line in str(notice.get_content()).splitlines():
                say(f"    | {line}")

            step("7. Summary at Point de Contact")
            rows = []
            for label, _, _, _ in CASES:
                case = fr.report(ids[label]) or {}
                rows.append(
                    {
                        "case": label,
                        "status": case["status"],
                        "decision": case["routing"]["decision"],
                        "countries": ",".join(case["hosting"]["countries"]),
                        "queued": ",".join(
                            f"{q['name']}:{q['state']}" for q in case["routing"]["queued"]
                        ),
                    }
                )
            table(rows, ["case", "status", "decision", "countries", "queued"])
            if keep:
                consoles_open = True
                open_consoles(nodes)
        except Stop as signalled:
            interrupted = signalled
        finally:
            ignore_signals()
            if interrupted is not None:
                say(f"\n  {interrupted}: stopping")
            step("Stopping every node and receiver")
            for node in nodes:
                code = node.stop()
                say(f"  {node.node_id} stopped (exit {code})")
            smtp.stop()
            receivers.run(webhook.stop())
            receivers.run(rdap.stop())
            receivers.close()
    ended = "stopped" if interrupted is not None and not consoles_open else "finished"
    say(f"\ndemo {ended} after {time.monotonic() - started:.0f} s; nothing left running")
    # Stopping the consoles (KEEP=1) is how that demo ends; stopping the story midway is not.
    return 0 if interrupted is None or consoles_open else 130


if __name__ == "__main__":
    try:
        status = main(keep="--keep" in sys.argv[1:])
    except Stop as signalled:  # in the first instants, before any node started
        say(f"\n  {signalled}: stopped before any node started")
        status = 130
    raise SystemExit(status)
