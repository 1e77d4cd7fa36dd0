"""node.toml: the node's configuration, validated by pydantic with errors naming key and value."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keys.document import CountryCode, NodeId
from node.countries import country_problem
from node.errors import ConfigError
from node.routing import ChannelRole
from protocol.records import Category

CONFIG_FILE = "node.toml"


def _port_in_range(value: str) -> str:
    # The pattern allows five digits: 65536-99999 would only fail later, when binding.
    if int(value.rsplit(":", 1)[1]) > 65535:
        raise ValueError("port must be between 0 and 65535")
    return value


def _assigned_country(value: str) -> str:
    problem = country_problem(value)
    if problem:
        raise ValueError(str(problem))
    return value


# Two capital letters (the key document's rule) that ISO 3166-1 assigns to a country.
Country = Annotated[CountryCode, AfterValidator(_assigned_country)]

# What each pattern means, for people: a config error says the rule in words, not a regex.
PATTERN_WORDS = {
    r"^[a-z0-9][a-z0-9.-]{0,62}$": "a lower-case id of letters, digits, dots and hyphens"
    " (at most 63, starting with a letter or digit), e.g. fr-pointdecontact",
    r"^[A-Z]{2}$": "two capital letters, an ISO 3166-1 alpha-2 country code such as FR",
    r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$": "HOST:PORT, e.g. 127.0.0.1:8700 or [::1]:8700",
    r"^[a-z0-9][a-z0-9-]{0,31}$": "a lower-case name of letters, digits and hyphens"
    " (at most 32), e.g. pharos",
}


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


HostPort = Annotated[
    str,
    Field(pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$"),
    AfterValidator(_port_in_range),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JurisdictionConfig(_Section):
    dns_server: HostPort | None = None
    dns_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    rdap_base: Annotated[str | None, AfterValidator(_http_url)] = None
    mmdb_country: str | None = None
    mmdb_asn: str | None = None
    geofeed: str | None = None
    overrides: dict[str, Country] = Field(default_factory=dict)
    cdn_asns: list[Annotated[int, Field(ge=1, le=2**32 - 1)]] = Field(default_factory=list)


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"must be an IP address or network such as 10.0.0.1 or 10.0.0.0/8 (got {value!r})"
        ) from None
    return value


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            "must be a web origin: scheme, host and optional port, with no path or trailing"
            f" slash, e.g. https://www.pointdecontact.net (got {value!r})"
        )
    return value.lower()


class IntakeConfig(_Section):
    public_reports_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 10
    max_body_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 64 * 1024
    # Reverse proxies in front of the node (addresses or networks): only a request arriving from
    # one of them has its client named by Forwarded or X-Forwarded-For; the public rate limit
    # then applies per real client. Empty: the TCP peer is the client.
    trusted_proxies: list[Annotated[str, AfterValidator(_network)]] = Field(default_factory=list)
    # The hotline's own web pages allowed to post public reports from a browser (CORS).
    cors_origins: list[Annotated[str, AfterValidator(_origin)]] = Field(default_factory=list)


class HttpConfig(_Section):
    """Read deadlines: a client that sends half a request is cut off, not waited for."""

    # The request line and headers must arrive within this time of the connection opening or
    # of the previous answer (an idle kept-alive connection is closed after it too).
    header_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 15.0
    # A body must arrive whole within this time of the handler starting to read it.
    body_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    # A second listener serving only what strangers need: the public form (/report), public
    # intake (/api/v1/public/reports), the key document, /healthz and federation. With it,
    # `listen` (console, analysts' API, administration, /metrics) can stay on an internal
    # address while only this one is exposed through the proxy.
    public_listen: HostPort | None = None

    @property
    def public_address(self) -> tuple[str, int] | None:
        if self.public_listen is None:
            return None
        host, port = self.public_listen.rsplit(":", 1)
        return host.strip("[]"), int(port)


class KeysConfig(_Section):
    validity_days: Annotated[int, Field(ge=1, le=3650)] = 90
    overlap_days: Annotated[int, Field(ge=0, le=365)] = 7
    rotate_every_days: Annotated[int, Field(ge=1, le=3650)] = 60


class FederationConfig(_Section):
    # For a node that cannot accept inbound connections: collect records from every peer.
    pull_from_peers: bool = False
    batch_size: Annotated[int, Field(ge=1, le=500)] = 200
    sweep_seconds: Annotated[int, Field(ge=1, le=3600)] = 15
    key_refresh_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 6
    request_timeout_seconds: Annotated[int, Field(ge=1, le=600)] = 30


class DirectoryConfig(_Section):
    # How often a node that trusts a member directory fetches its list again (protocol.md
    # §14.6). Lists are valid about a week: hourly notices a change within the hour.
    refresh_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 60


ChannelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


class ChannelConfig(_Section):
    """One national channel: a signed webhook or e-mail over SMTP, serving routing roles."""

    kind: Literal["webhook", "email"]
    roles: list[ChannelRole] = Field(min_length=1)
    # Empty means every category / every hosting country.
    categories: list[Category] = Field(default_factory=list)
    countries: list[Country] = Field(default_factory=list)
    # What a delivery records on the case (default: lea_referred for police, else notice_sent).
    records_as: Literal["lea_referred", "notice_sent"] | None = None
    url: str | None = None
    to: str | None = None
    from_address: str | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password_file: str | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 30

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        if self.kind == "webhook":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError('a webhook channel needs url = "https://…"')
        else:
            if not self.from_address or "@" not in self.from_address:
                raise ValueError('an email channel needs from_address = "notices@…"')
            if self.to is not None and "@" not in self.to:
                raise ValueError(f"to must be an e-mail address (got {self.to!r})")
            if self.username and not self.password_file:
                raise ValueError("username needs password_file (the password is never inline)")
            if self.password_file and not Path(self.password_file).is_file():
                raise ValueError(f"password_file: no such file {self.password_file!r}")
        return self


def _csam_only() -> list[Category]:
    return [Category.CSAM]


class NoticesConfig(_Section):
    """What host notices say and when they go (DSA Art. 16 notices, reminders, holds)."""

    notifier_name: str = ""
    notifier_email: str = ""
    notifier_address: str = ""
    # DSA Art. 16(2)(c): the notifier's identity is not required for CSAM offences.
    omit_notifier_for: list[Category] = Field(default_factory=lambda: _csam_only())
    reminder_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 24
    group_window_seconds: Annotated[int, Field(ge=0, le=86_400)] = 600
    # Law-enforcement-first: host notices of these categories wait this many hours for police.
    lea_first_hours: dict[Category, Annotated[int, Field(ge=1, le=24 * 30)]] = Field(
        default_factory=dict
    )
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 12


class RetentionConfig(_Section):
    personal_data_days: Annotated[int, Field(ge=1, le=36500)] = 365


class ConsoleConfig(_Section):
    """The web console: who may sign in how, and which verdicts need a second pair of eyes."""

    # Every sign-in needs a one-time code (accounts without TOTP cannot sign in until reset).
    totp_required: bool = False
    session_minutes: Annotated[int, Field(ge=5, le=24 * 60)] = 480
    # A verdict other than `not_illegal` in these categories routes only once a reviewer
    # confirms it, and so does any change of such a verdict (node/review.py).
    four_eyes: list[Category] = Field(default_factory=_csam_only)
    # Sign-in attempts per minute from one address (and to one name).
    sign_ins_per_minute: Annotated[int, Field(ge=1, le=1000)] = 10
    # The language of the console until a person chooses; by default from the node's country.
    language: Literal["en", "fr"] | None = None


class HashesConfig(_Section):
    # Meta's guidance for PDQ: a match at a Hamming distance of 31 or less of 256 bits.
    pdq_max_distance: Annotated[int, Field(ge=0, le=128)] = 31


class StorageConfig(_Section):
    # `serve` warns while less than this is free on the data directory's file system: time to
    # act before a full disk refuses new work (507). 0: no warning.
    warn_free_mb: Annotated[int, Field(ge=0, le=100_000_000)] = 1024
    # How often `serve` measures the free space (also what /metrics shows between checks).
    check_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    # The database writer's page cache, in MiB: the node's memory grows by up to this much as
    # it works, then stays. 64 makes large batches cheaper to apply; a small hotline, or many
    # nodes on one machine, can give less.
    cache_mib: Annotated[int, Field(ge=2, le=4096)] = 64


class NodeConfig(_Section):
    node_id: NodeId
    country: Country
    endpoint: str
    listen: HostPort = "127.0.0.1:8700"
    jurisdiction: JurisdictionConfig = Field(default_factory=JurisdictionConfig)
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    channels: dict[ChannelName, ChannelConfig] = Field(default_factory=dict)
    notices: NoticesConfig = Field(default_factory=NoticesConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    hashes: HashesConfig = Field(default_factory=HashesConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        # "http://" alone would be stored as "http:" (and then refused when read back).
        if not urlsplit(value).hostname:
            raise ValueError("must name a host")
        return value.rstrip("/")

    @property
    def listen_host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def _describe(exc: ValidationError, raw: dict[str, Any], flags: bool = False) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if flags:  # the values came from the command line: name the flag
        key = "--" + str(error["loc"][-1]).replace("_", "-")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = "must be " + PATTERN_WORDS.get(pattern, "in the documented form")
    value: Any = raw
    for part in error["loc"]:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]  # e.g. jurisdiction.cdn_asns.1
        else:
            value = None
    shown = "" if value is None or f"{value!r}" in message else f" (value {value!r})"
    return f"{key}: {message}{shown}"


def parse_config(raw: dict[str, Any], source: str = CONFIG_FILE) -> NodeConfig:
    try:
        return NodeConfig.model_validate(raw)
    except ValidationError as exc:
        if source == COMMAND_LINE:
            raise ConfigError(_describe(exc, raw, flags=True)) from exc
        raise ConfigError(f"{source}: {_describe(exc, raw)}") from exc


COMMAND_LINE = "command line"


def load_config(data_dir: Path) -> NodeConfig:
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} not found: run `hotline-node init` first or pass --data-dir"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, str(path))


def _toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters (DEL too) escaped."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(config: NodeConfig) -> str:
    """Write the config as TOML (a small writer: our values are strings, numbers, lists, tables)."""
    data = config.model_dump(exclude_none=True)
    lines = ["# hotline-node configuration; see docs/operator-guide.md", ""]
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        nested = [(k, v) for k, v in table.items() if isinstance(v, dict)]
        for key, value in table.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in nested:
            lines += ["", f"[{name}.{key}]"]
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"
