"""The socket guard itself: traffic off loopback fails, loopback works."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NonLoopbackTrafficError


def test_connect_to_public_address_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(NonLoopbackTrafficError),
    ):
        sock.connect(("192.0.2.1", 80))


def test_udp_to_public_address_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(NonLoopbackTrafficError),
    ):
        sock.sendto(b"x", ("198.51.100.7", 53))


def test_loopback_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            accepted.close()
