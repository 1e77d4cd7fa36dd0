"""Write small MaxMind-format databases (mmdb_writer) so the mmdb providers read real files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

# 2024-05-14T00:00:00Z: a fixed build date, so source_date is known to the test.
BUILD_EPOCH = 1715644800
BUILD_DAY = "2024-05-14"


class _FixedDateWriter(MMDBWriter):
    def _build_meta(self) -> dict[str, Any]:
        meta = super()._build_meta()
        meta["build_epoch"] = BUILD_EPOCH  # the writer stamps the current time otherwise
        return meta


def write_mmdb(path: Path, database_type: str, records: Mapping[str, dict[str, Any]]) -> Path:
    writer = _FixedDateWriter(
        ip_version=6, ipv4_compatible=True, database_type=database_type, description="test"
    )
    for cidr, record in records.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def country_record(located: str, registered: str | None = None) -> dict[str, Any]:
    """GeoIP2-Country layout: the located country and, apart, the registered one."""
    record: dict[str, Any] = {"country": {"iso_code": located, "names": {"en": located}}}
    if registered:
        record["registered_country"] = {"iso_code": registered}
    return record


def asn_record(asn: int, org: str) -> dict[str, Any]:
    """GeoLite2-ASN layout."""
    return {"autonomous_system_number": asn, "autonomous_system_organization": org}
