"""The two ways a message leaves the node: a signed JSON webhook, or e-mail over SMTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import orjson

from keys import SigningKey
from node.channels.base import Message, Outcome
from node.channels.notices import NoticeParty, build_email, build_police_email
from node.config import ChannelConfig
from node.contacts import email_address
from node.errors import InvalidInput
from peers.client import signed_headers

MAX_REPLY_BYTES = 64 * 1024


class WebhookChannel:
    """JSON POST signed like federation requests (RFC 9421), so the receiver can verify us."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        config: ChannelConfig,
        session: aiohttp.ClientSession,
        *,
        node_id: str,
        signing_key: Callable[[], SigningKey],
        clock: Callable[[], datetime],
    ) -> None:
        assert config.url is not None
        self.name = name
        self.url = config.url
        self.timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        self.session = session
        self.node_id = node_id
        self.signing_key = signing_key
        self.clock = clock

    def body(self, message: Message) -> bytes:
        return orjson.dumps(
            {
                "type": "hotline-node/referral",
                "v": 1,
                "from": self.node_id,
                "role": message.role,
                "reminder": message.reminder,
                "test": message.test,
                "tlp": message.tlp,
                "reference": message.reference,
                "sent_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "cases": [
                    {
                        "report_id": item.report_id,
                        "url": item.url,
                        "category": item.category,
                        "verdict": item.verdict,
                        "legal_basis": item.legal_basis,
                        "hosting_country": item.country,
                        "abuse_contact": item.abuse_contact,
                        "cdn": item.cdn_name,
                        "reason": item.reason,
                        "tlp": item.tlp,
                    }
                    for item in message.items
                ],
            },
            option=orjson.OPT_SORT_KEYS,
        )

    async def deliver(self, message: Message) -> Outcome:
        body = self.body(message)
        headers = signed_headers(
            "POST", self.url, body, node_id=self.node_id, key=self.signing_key(), now=self.clock()
        )
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout
            ) as response:
                reply = await response.content.read(MAX_REPLY_BYTES)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Outcome(False, f"{self.name}: {type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Outcome(True, f"{self.name}: HTTP {status}", cleared=_cleared(reply))
        permanent = 400 <= status < 500 and status not in (408, 429)
        return Outcome(
            False,
            f"{self.name}: HTTP {status} {reply[:200].decode('utf-8', 'replace')}",
            permanent=permanent,
        )


def _cleared(reply: bytes) -> bool:
    """A police platform may answer {"cleared": true}: the host may be notified at once."""
    try:
        data: Any = orjson.loads(reply)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("cleared") is True


class EmailChannel:
    """SMTP through aiosmtplib; STARTTLS or implicit TLS and authentication as configured."""

    kind = "email"

    def __init__(
        self, name: str, config: ChannelConfig, party: NoticeParty, clock: Callable[[], datetime]
    ) -> None:
        assert config.from_address is not None
        self.name = name
        self.config = config
        self.party = party
        self.clock = clock

    def _password(self) -> str | None:
        if not self.config.password_file:
            return None
        return Path(self.config.password_file).read_text(encoding="utf-8").strip()

    def compose(self, message: Message, first_sent: str | None = None) -> Any:
        to = self.config.to or message.recipient_hint
        if not to:
            return None
        # Checked again at the last moment: a value stored before the checks at entry existed
        # must not become a header (InvalidInput: the message is refused, not retried).
        to = email_address(to, "recipient")
        if message.role in ("host_notice", "cdn_notice") or self.config.to is None:
            return build_email(message, self.party, to, self.clock(), first_sent)
        return build_police_email(message, self.party, to, self.clock())

    async def deliver(self, message: Message) -> Outcome:
        try:
            email = self.compose(message)
        except InvalidInput as exc:
            return Outcome(False, f"{self.name}: {exc}", permanent=True)
        if email is None:
            return Outcome(
                False, f"{self.name}: no recipient: the case has no abuse contact", permanent=True
            )
        try:
            await aiosmtplib.send(
                email,
                hostname=self.config.smtp_host,
                port=self.config.smtp_port,
                start_tls=self.config.starttls,
                use_tls=self.config.tls,
                username=self.config.username,
                password=self._password(),
                timeout=self.config.timeout_seconds,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx is a refusal (bad address, policy); 4xx is "try again later".
            return Outcome(
                False, f"{self.name}: SMTP {exc.code} {exc.message}", permanent=exc.code >= 500
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Outcome(False, f"{self.name}: {type(exc).__name__}: {exc}")
        return Outcome(True, f"{self.name}: sent to {email['To']} ({email['Message-ID']})")
