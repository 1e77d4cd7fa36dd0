"""Suite-wide guard: any socket use towards an address outside loopback fails the test at once."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest


class NonLoopbackTrafficError(AssertionError):
    """A test tried to reach an address outside 127.0.0.0/8 and ::1."""


def _check_address(address: Any) -> None:
    if not isinstance(address, tuple) or not address:
        return  # AF_UNIX paths and the like stay on this machine
    host = address[0]
    try:
        ip = ipaddress.ip_address(host.split("%")[0] if isinstance(host, str) else host)
    except ValueError:
        raise NonLoopbackTrafficError(f"connection to unresolved host {host!r}") from None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if not ip.is_loopback and not (mapped is not None and mapped.is_loopback):
        raise NonLoopbackTrafficError(f"test traffic to non-loopback address {host}")


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address)
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address)
    return _original_connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check_address(args[-1])
    return _original_sendto(self, data, *args)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]
