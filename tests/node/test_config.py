"""node.toml: every refusal names the key and the value; what render_config writes loads back."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.storage import write_private_file
from node.config import CONFIG_FILE, NodeConfig, load_config, parse_config, render_config
from node.errors import ConfigError


def base() -> dict[str, Any]:
    return {
        "node_id": "fr-pointdecontact",
        "country": "FR",
        "endpoint": "https://hotline.example.fr",
    }


def with_value(path: str, value: Any) -> dict[str, Any]:
    raw = base()
    *sections, key = path.split(".")
    target = raw
    for section in sections:
        target = target.setdefault(section, {})
    target[key] = value
    return raw


BAD = [
    ("country", "fr", "country", "'fr'"),
    ("country", "FRA", "country", "'FRA'"),
    ("country", 33, "country", "33"),
    ("node_id", "FR Hotline", "node_id", "'FR Hotline'"),
    ("node_id", "-starts-with-dash", "node_id", "'-starts-with-dash'"),
    ("listen", "localhost", "listen", "'localhost'"),
    ("listen", "127.0.0.1:99999", "listen", "'127.0.0.1:99999'"),
    ("listen", 8700, "listen", "8700"),
    ("endpoint", "ftp://hotline.example.fr", "endpoint", "'ftp://hotline.example.fr'"),
    ("endpoint", "hotline.example.fr", "endpoint", "'hotline.example.fr'"),
    ("endpoint", "https://", "endpoint", "'https://'"),
    ("colour", "blue", "colour", "'blue'"),
    ("intake.burst", 5, "intake.burst", "5"),
    ("intake.max_body_bytes", -1, "intake.max_body_bytes", "-1"),
    ("intake.public_reports_per_minute", 0, "intake.public_reports_per_minute", "0"),
    ("http.header_timeout_seconds", -1, "http.header_timeout_seconds", "-1"),
    ("http.body_timeout_seconds", 7200, "http.body_timeout_seconds", "7200"),
    ("keys.validity_days", -90, "keys.validity_days", "-90"),
    ("keys.overlap_days", -1, "keys.overlap_days", "-1"),
    ("retention.personal_data_days", 0, "retention.personal_data_days", "0"),
    ("jurisdiction.dns_timeout_seconds", -1.5, "jurisdiction.dns_timeout_seconds", "-1.5"),
    ("jurisdiction.dns_server", "resolver", "jurisdiction.dns_server", "'resolver'"),
    ("jurisdiction.dns_server", "127.0.0.1:70000", "jurisdiction.dns_server", "'127.0.0.1:70000'"),
    ("jurisdiction.cdn_asns", [13335, -1], "jurisdiction.cdn_asns.1", "-1"),
    ("jurisdiction.overrides", {"10.0.0.0/8": "fr"}, "jurisdiction.overrides.10.0.0.0/8", "'fr'"),
]


@pytest.mark.parametrize(
    ("path", "value", "key", "shown"), BAD, ids=[b[0] + str(i) for i, b in enumerate(BAD)]
)
def test_refusal_names_the_key_and_the_value(path: str, value: Any, key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(with_value(path, value), "node.toml")
    message = str(refused.value)
    assert message.startswith(f"node.toml: {key}: "), message
    assert f"(value {shown})" in message, message
    assert "\n" not in message


def test_a_missing_key_is_named() -> None:
    raw = base()
    del raw["country"]
    with pytest.raises(ConfigError, match=r"^here: country: Field required$"):
        parse_config(raw, "here")


def test_a_section_that_is_not_a_table() -> None:
    with pytest.raises(ConfigError, match=r"^node.toml: intake: .* \(value 5\)$"):
        parse_config({**base(), "intake": 5}, "node.toml")


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found: run `hotline-node init` first"):
        load_config(tmp_path)
    path = tmp_path / CONFIG_FILE
    path.write_text('node_id = "fr-pointdecontact"\ncountry = "FR\n')
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path)
    assert str(refused.value).startswith(f"{path}: not valid TOML")
    path.write_text(
        'node_id = "fr-pointdecontact"\ncountry = "fr"\nendpoint = "http://x.example"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path)
    assert str(refused.value) == (
        f"{path}: country: must be two capital letters, an ISO 3166-1 alpha-2 country code"
        " such as FR (value 'fr')"
    )


def test_defaults() -> None:
    config = parse_config(base())
    assert config.listen == "127.0.0.1:8700"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8700)
    assert config.intake.max_body_bytes == 64 * 1024
    assert config.intake.public_reports_per_minute == 10
    assert config.jurisdiction.dns_server is None


def test_endpoint_loses_its_trailing_slash_and_ipv6_listen_is_split() -> None:
    config = parse_config({**base(), "endpoint": "https://h.example/", "listen": "[::1]:8701"})
    assert config.endpoint == "https://h.example"
    assert (config.listen_host, config.listen_port) == ("::1", 8701)


# round trip ----------------------------------------------------------------------------------
def full_config() -> NodeConfig:
    return parse_config(
        {
            "node_id": "de-eco",
            "country": "DE",
            "endpoint": "https://hotline.example.de/node",
            "listen": "[::1]:8700",
            "jurisdiction": {
                "dns_server": "127.0.0.1:5353",
                "dns_timeout_seconds": 2.5,
                "rdap_base": "https://rdap.example/",
                "mmdb_country": '/var/lib/geo/Country "2026".mmdb',
                "mmdb_asn": "C:\\geo\\asn.mmdb",
                "geofeed": "/etc/hotline/geofeed\tlocal.csv",
                "overrides": {"192.0.2.0/24": "FR", "2001:db8::/32": "DE"},
                "cdn_asns": [13335, 54113],
            },
            "intake": {"public_reports_per_minute": 5, "max_body_bytes": 2048},
            "keys": {"validity_days": 30, "overlap_days": 3, "rotate_every_days": 20},
            "retention": {"personal_data_days": 90},
        }
    )


def test_render_then_load_gives_the_same_config(tmp_path: Path) -> None:
    config = full_config()
    write_private_file(tmp_path / CONFIG_FILE, render_config(config).encode())
    assert load_config(tmp_path) == config


def test_render_of_the_defaults_round_trips() -> None:
    config = parse_config(base())
    assert parse_config(tomllib.loads(render_config(config))) == config


@given(
    text=st.text(max_size=40),
    key=st.text(min_size=1, max_size=20),
)
def test_any_string_value_and_key_round_trip(text: str, key: str) -> None:
    """Quotes, backslashes, newlines, control characters, DEL, any script."""
    config = parse_config(
        {
            **base(),
            "jurisdiction": {"geofeed": text, "mmdb_asn": text, "overrides": {key: "FR"}},
        }
    )
    assert parse_config(tomllib.loads(render_config(config))) == config


def test_control_characters_are_escaped_not_written_raw() -> None:
    config = parse_config({**base(), "jurisdiction": {"geofeed": "a\nb\x00c\x7fd"}})
    rendered = render_config(config)
    assert 'geofeed = "a\\u000ab\\u0000c\\u007fd"' in rendered
