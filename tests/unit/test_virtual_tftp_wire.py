"""The in-memory TFTP wire (labsim.virtual.tftp): the phones' client session against the
server's handler and transfers, with the adapters' timer rules, on datagrams lost on
purpose."""

from types import SimpleNamespace

import pytest

from labsim.virtual import tftp as virtual_tftp
from labsim.wire import tftp as wire

SERVER = ("127.0.0.1", 6969)
HOP = 0.001


class DropThese:
    """A fault set that loses the n-th datagram of a direction (1-based), nothing else."""

    def __init__(self, **lost):
        self._by_service = {"tftp": [object()]}
        self.lost = {direction: set(numbers) for direction, numbers in lost.items()}
        self.seen = {"in": 0, "out": 0}
        self.kinds = {"in": [], "out": []}

    def plan(self, service, direction, data, now):
        self.seen[direction] += 1
        self.kinds[direction].append(wire.opcode_of(data))
        return [] if self.seen[direction] in self.lost.get(direction, ()) else [(0.0, data)]


@pytest.fixture
def handler(tmp_path):
    (tmp_path / "a.cfg").write_bytes(b"x" * 100)
    spec = SimpleNamespace(blksize_max=1468, timeout_s=1.0, max_retransmits=5, uploads=False, upload_dir="uploads")
    return virtual_tftp.server_handler(spec, str(tmp_path), None)


def get(handler, faults=None, name="a.cfg"):
    return virtual_tftp.exchange(virtual_tftp.get_session(SERVER, name), handler, faults, 0.0, HOP)


def test_a_clean_download_is_four_hops_and_counted_once(handler):
    result, took = get(handler)
    assert result.ok and result.body == b"x" * 100 and took == pytest.approx(4 * HOP)  # RRQ OACK ACK0 DATA1
    assert handler.stats["transfers_ok"] == 1 and handler.stats["packets_sent"] == 2  # OACK, DATA 1


def test_nobody_answering_times_out_as_the_phones_client_backs_off(handler):
    result, took = virtual_tftp.exchange(virtual_tftp.get_session(SERVER, "a.cfg"), None, None, 0.0, HOP)
    assert (result.status, result.detail) == ("timeout", "TFTP: no answer")
    assert took == pytest.approx(1 + 2 + 4 + 8 + 8 + 8)  # five retransmissions, doubling up to 8 s


def test_a_lost_final_ack_is_answered_again_from_the_finished_client(handler):
    faults = DropThese(**{"in": [3]})  # RRQ, ACK 0, then the final ACK is lost
    result, took = get(handler, faults)
    assert result.ok and took == pytest.approx(4 * HOP)  # the phone is done at once
    # The server resent DATA 1 after its 1 s; the client's port still answered it.
    assert handler.stats["retransmits"] == 1 and handler.stats["transfers_ok"] == 1
    assert faults.kinds["in"] == [wire.RRQ, wire.ACK, wire.ACK, wire.ACK]


def test_a_lost_oack_makes_a_second_transfer_the_client_refuses(handler):
    faults = DropThese(out=[1])
    result, took = get(handler, faults)
    assert result.ok and 1.0 < took < 1.01
    stats = handler.stats
    # The client resent its RRQ at 1 s; the server started a second transfer on another
    # TID (as on sockets), the client locked on to whichever answered first and told the
    # other ERROR 5.
    assert stats["rrq"] == 2 and stats["transfers_started"] == 2
    assert stats["transfers_ok"] == 1 and stats["client_errors"] == 1


def test_errors_and_refusals_are_the_servers(handler):
    missing, _ = get(handler, name="nope.cfg")
    escape, _ = get(handler, name="../a.cfg")
    assert (missing.status, missing.detail) == ("not_found", "TFTP: TFTP error 1: File not found")
    assert (escape.status, escape.detail) == ("denied", "TFTP: TFTP error 2: Access violation")
    assert handler.stats["not_found"] == 1 and handler.stats["access_violation"] == 1
