"""A small real DNS server on 127.0.0.1 (UDP and TCP, background thread) serving a zone from a dict.

Usable from tests, end-to-end tests and demos alike (no pytest import):

    zone = {
        "files.example.de": {"A": [("88.198.1.2", 300)]},
        "cdn.example": {"CNAME": [("x.cloudfront.net", 60)]},
        "x.cloudfront.net": {"A": [("13.32.0.1", 20)]},
    }
    with ZoneDnsServer(zone, nxdomain=["gone.example"], silent=["slow.example"]) as server:
        resolver = DnsResolver(server.nameserver)  # "127.0.0.1:PORT"

It answers like a recursive resolver would: an alias is followed inside the zone and the whole CNAME
chain is put in the answer. Names that are not in the zone get NXDOMAIN; names in `silent` get no
answer at all (a client timeout) — `"name"` for every type, `"name:AAAA"` for one type only, as
with servers that drop AAAA queries; names in `servfail` get SERVFAIL. UDP answers bigger than the
client's buffer (512 bytes, or its EDNS size) come back truncated so the client retries over TCP,
on the same port number.

Standalone: `python -m tests.support.dns_server zone.json [--port N]` with a JSON zone
{"name": {"A": [["1.2.3.4", 300]]}}; it prints the port and serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import dns.name
from dnslib import (  # type: ignore[import-untyped]
    AAAA,
    CNAME,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSHeader,
    DNSRecord,
)

RecordValue = tuple[str, int] | str
Zone = Mapping[str, Mapping[str, Sequence[RecordValue]]]

DEFAULT_TTL = 300
MAX_CHAIN = 16
_RDATA: dict[str, Any] = {"A": A, "AAAA": AAAA, "CNAME": CNAME, "TXT": TXT}


def _key(name: str) -> str:
    """Zone keys and query names compare lower-case, IDNA-encoded, without the final dot."""
    text = name.strip().rstrip(".").lower()
    if ":" in text:  # a "name:TYPE" entry of `silent`
        base, _, rtype = text.partition(":")
        return f"{_key(base)}:{rtype}"
    if text.isascii():
        return text
    encoded = dns.name.from_unicode(text, idna_codec=dns.name.IDNA_2008_Practical)
    return encoded.to_text(omit_final_dot=True).lower()


class ZoneDnsServer:
    """DNS server bound to 127.0.0.1 on an OS-chosen port (or `port`), run in a daemon thread."""

    def __init__(
        self,
        zone: Zone,
        *,
        nxdomain: Iterable[str] = (),
        silent: Iterable[str] = (),
        servfail: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        tcp: bool = True,
    ) -> None:
        self._zone: dict[str, dict[str, list[tuple[str, int]]]] = {}
        for name, records in zone.items():
            entry: dict[str, list[tuple[str, int]]] = {}
            for rtype, values in records.items():
                kind = rtype.upper()
                if kind not in _RDATA:
                    raise ValueError(f"unsupported record type {rtype!r} for {name}")
                entry[kind] = [
                    (value, DEFAULT_TTL) if isinstance(value, str) else (value[0], int(value[1]))
                    for value in values
                ]
            self._zone[_key(name)] = entry
        self._nxdomain = {_key(n) for n in nxdomain}
        self._silent = {_key(n) for n in silent}
        self._servfail = {_key(n) for n in servfail}
        self._host = host
        self._requested_port = port
        self._tcp_enabled = tcp
        self._lock = threading.Lock()
        self._queries: list[tuple[str, str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ZoneDnsServer:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="zone-dns-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None

    def __enter__(self) -> ZoneDnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def nameserver(self) -> str:
        """`HOST:PORT`, the form DnsResolver and `--dns-server` take."""
        return f"{self._host}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """Every question received so far: (name, type, "udp" | "tcp")."""
        with self._lock:
            return list(self._queries)

    def _bind(self) -> None:
        # UDP and TCP share one port number, as on a real server; when the OS-chosen UDP port is
        # taken for TCP, try again with another one.
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self._host, self._requested_port))
            port = udp.getsockname()[1]
            if not self._tcp_enabled:
                self._udp, self.port = udp, port
                return
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self._host, port))
            except OSError:
                tcp.close()
                udp.close()
                if self._requested_port:
                    raise
                continue
            tcp.listen(16)
            self._udp, self._tcp, self.port = udp, tcp, port
            return
        raise OSError("could not find a port free for both UDP and TCP")

    # -- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            if self._tcp is not None:
                selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.05):
                    if key.data == "udp":
                        self._serve_udp()
                    else:
                        self._serve_tcp()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        try:
            data, client = self._udp.recvfrom(65535)
        except OSError:
            return
        reply = self._answer(data, "udp")
        if reply is not None:
            self._udp.sendto(reply, client)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        try:
            conn, _ = self._tcp.accept()
        except OSError:
            return
        # One thread per connection: an idle TCP client must not hold up the UDP service.
        threading.Thread(target=self._tcp_connection, args=(conn,), daemon=True).start()

    def _tcp_connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2.0)
            try:
                while not self._stop.is_set():
                    header = _recv_exact(conn, 2)
                    if header is None:
                        return
                    message = _recv_exact(conn, struct.unpack("!H", header)[0])
                    if message is None:
                        return
                    reply = self._answer(message, "tcp")
                    if reply is None:
                        return  # a silent name: hang up without an answer
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    def _answer(self, data: bytes, transport: str) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:
            return None  # not DNS: drop it, as servers do
        question = request.q
        name = _key(str(question.qname))
        qtype = QTYPE.get(question.qtype, str(question.qtype))
        with self._lock:
            self._queries.append((name, str(qtype), transport))
        if name in self._silent or f"{name}:{qtype}".lower() in self._silent:
            return None
        reply = DNSRecord(
            DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, rd=request.header.rd), q=question
        )
        if name in self._servfail:
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        self._fill(reply, name, str(qtype))
        packed = bytes(reply.pack())
        if transport == "udp" and len(packed) > _udp_limit(request):
            truncated = DNSRecord(
                DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, tc=1, rd=request.header.rd),
                q=question,
            )
            return bytes(truncated.pack())
        return packed

    def _fill(self, reply: Any, name: str, qtype: str) -> None:
        """Answer section of a recursive resolver: the alias chain, then the records asked."""
        current = name
        for _ in range(MAX_CHAIN):
            if current in self._nxdomain or current not in self._zone:
                if current in self._silent or current in self._servfail:
                    reply.header.rcode = RCODE.SERVFAIL
                else:
                    reply.header.rcode = RCODE.NXDOMAIN
                return
            records = self._zone[current]
            if "CNAME" in records and qtype != "CNAME":
                target, ttl = records["CNAME"][0]
                reply.add_answer(RR(current, QTYPE.CNAME, rdata=CNAME(target), ttl=ttl))
                current = _key(target)
                continue
            for value, ttl in records.get(qtype, []):
                reply.add_answer(
                    RR(current, getattr(QTYPE, qtype), rdata=_RDATA[qtype](value), ttl=ttl)
                )
            return
        reply.header.rcode = RCODE.SERVFAIL  # an alias loop


def _udp_limit(request: Any) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, int(rr.rclass))
    return 512


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a JSON zone on 127.0.0.1 over UDP and TCP.")
    parser.add_argument("zone", help='JSON file: {"name": {"A": [["1.2.3.4", 300]]}, ...}')
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--nxdomain", action="append", default=[], help="name answered NXDOMAIN")
    parser.add_argument("--silent", action="append", default=[], help="name never answered")
    args = parser.parse_args(argv)
    with open(args.zone, encoding="utf-8") as handle:
        raw = json.load(handle)
    zone: dict[str, dict[str, list[RecordValue]]] = {
        name: {
            rtype: [(str(v[0]), int(v[1])) if isinstance(v, list) else str(v) for v in values]
            for rtype, values in records.items()
        }
        for name, records in raw.items()
    }
    with ZoneDnsServer(zone, nxdomain=args.nxdomain, silent=args.silent, port=args.port) as server:
        print(f"serving DNS on {server.nameserver}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
