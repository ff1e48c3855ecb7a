"""The lab's safety rule: phones reach only loopback addresses."""

import pytest

from labsim.transport.guard import NotLoopback, loopback_address


@pytest.mark.parametrize("host, expected", [
    ("127.0.0.1", "127.0.0.1"), ("127.9.8.7", "127.9.8.7"), ("localhost", "127.0.0.1"),
    ("::1", "::1"), ("[::1]", "::1"), ("LOCALHOST", "127.0.0.1"),
])
def test_loopback_addresses_pass(host, expected):
    assert loopback_address(host) == expected


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "172.16.0.1", "8.8.8.8", "0.0.0.0",
                                  "2001:db8::1", "provisioning.example.com", ""])
def test_anything_else_is_refused(host):
    with pytest.raises(NotLoopback):
        loopback_address(host)
