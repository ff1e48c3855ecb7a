"""FTP in memory (labsim.virtual.ftp over labsim.virtual.tcp) on a HeapClock: labsim's
FTP server (pyftpdlib's handlers with labsim's hooks) and the phones' FTP client
(transport.ftp_fetch), every segment one hop on the clock. The protocol is all there
(greeting, PASV and its data port, reply texts), the faults act in the server, a stop or
a restart lands in the middle of an exchange, and nothing is left scheduled after."""

from __future__ import annotations

import os
import random
import types

import pytest
from twisted.internet.protocol import ClientFactory, Protocol

from labsim.faults import ActiveFault, FaultSet, FaultyLink
from labsim.phones.events import Credentials
from labsim.transport.ftp_fetch import ftp_get, ftp_put
from labsim.virtual.clock import HeapClock
from labsim.virtual.ftp import VirtualFtpServer
from labsim.virtual.tcp import LabReactor, TcpLab

HOP = 0.001
PORT = 2121
ALICE = Credentials("alice", "s3cret")
BODY = b"#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n" * 20


class Lab:
    """One FTP service in memory and the phones' side of the lab."""

    def __init__(self, root, *faults: ActiveFault, **spec):
        self.clock = HeapClock()
        self.root = str(root)
        (root / "y000000000066.cfg").write_bytes(BODY)
        self.faults = FaultSet(random.Random(1))
        for fault in faults:
            self.faults.add(fault)
        settings = dict(users={"alice": "s3cret"}, anonymous=False, uploads=True, upload_dir="uploads",
                        idle_timeout_s=60.0, max_connections_per_address=None, address="127.0.0.1", port=PORT,
                        passive_ports=None)
        settings.update(spec)
        self.spec = types.SimpleNamespace(**settings)
        self.server: VirtualFtpServer | None = None
        self.start()
        self.reactor = LabReactor(self.clock, TcpLab(self.clock, HOP, self.listener_at))
        self.results: list[tuple[float, object]] = []

    def start(self) -> None:
        self.server = VirtualFtpServer(self.spec, self.root, None, self.clock,
                                       FaultyLink(self.faults, "ftp", self.clock))

    def stop(self) -> None:
        self.server.stop()
        self.server = None

    def listener_at(self, port):
        return self.server.listener_at(port) if self.server is not None else None

    def get(self, path="y000000000066.cfg", credentials=ALICE, **kw):
        ftp_get(self.reactor, "127.0.0.1", PORT, path, credentials, **kw).addCallback(self._done)

    def put(self, path, body, credentials=ALICE):
        ftp_put(self.reactor, "127.0.0.1", PORT, path, body, credentials).addCallback(self._done)

    def _done(self, result) -> None:
        self.results.append((round(self.clock.seconds(), 6), result))


class Script(Protocol):
    """A bare client: sends each command once the reply to the one before has come."""

    def __init__(self, commands):
        self.commands = list(commands)
        self.replies: list[str] = []
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            self.replies.append(line.decode())
            if line[3:4] == b" " and self.commands:
                self.transport.write(self.commands.pop(0).encode() + b"\r\n")


class Sink(Protocol):
    def __init__(self):
        self.data = b""
        self.ended = None

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.ended = reason.type.__name__


def factory_of(protocol):
    factory = ClientFactory()
    factory.buildProtocol = lambda addr: protocol
    return factory


def test_a_download_is_the_protocol_segment_by_segment(tmp_path):
    lab = Lab(tmp_path)
    lab.get()
    lab.clock.advance(60)
    [(when, result)] = lab.results
    assert (result.status, result.body) == ("ok", BODY)
    # SYN, SYN-ACK (the 220 right behind), USER, PASS, TYPE I, PASV and their answers,
    # the data connection's SYN beside the RETR, the file and the 226: twelve hops.
    assert when == pytest.approx(12 * HOP)
    stats = lab.server.stats
    assert (stats["sessions"], stats["logins_ok"], stats["files_sent"], stats["bytes_sent"]) == (1, 1, 1, len(BODY))
    assert len(lab.clock) == 0  # the QUIT read, both ends closed, every timer gone


def test_the_replies_and_the_passive_data_port_are_pyftpdlibs(tmp_path):
    lab = Lab(tmp_path)
    script = Script(["USER alice", "PASS s3cret", "TYPE I", "PASV"])
    lab.reactor.connectTCP("127.0.0.1", PORT, factory_of(script))
    lab.clock.advance(1)
    assert script.replies == ["220 labsim FTP server ready.", "331 Username ok, send password.",
                              "230 Login successful.", "200 Type set to: Binary.",
                              script.replies[-1]]
    pasv = script.replies[-1]
    assert pasv.startswith("227 Entering passive mode (127,0,0,1,")
    p1, p2 = map(int, pasv.rstrip(").").rsplit(",", 2)[1:])
    assert lab.server.listener_at(p1 * 256 + p2) is not None  # the data port named is one the server listens on
    sink = Sink()
    lab.reactor.connectTCP("127.0.0.1", p1 * 256 + p2, factory_of(sink))
    script.transport.write(b"RETR y000000000066.cfg\r\n")
    lab.clock.advance(1)
    assert sink.data == BODY and sink.ended == "ConnectionDone"
    assert script.replies[-2:] == ["125 Data connection already open. Transfer starting.", "226 Transfer complete."]
    assert lab.server.listener_at(p1 * 256 + p2) is None  # one connection a PASV: closed once taken


def test_two_exchanges_side_by_side_each_get_their_own_data_port(tmp_path):
    lab = Lab(tmp_path)
    lab.get()
    lab.get("missing.cfg")
    lab.put("uploads/0004f2000001-app.log", b"log line\n")
    lab.clock.advance(60)
    got = sorted((when, result.status, result.detail) for when, result in lab.results)
    assert got == [(pytest.approx(12 * HOP), "not_found", "FTP: 550 No such file or directory."),
                   (pytest.approx(12 * HOP), "ok", ""), (pytest.approx(14 * HOP), "ok", "")]  # the STOR's 226 follows the FIN
    assert (tmp_path / "uploads" / "0004f2000001-app.log").read_bytes() == b"log line\n"
    assert lab.server.stats["files_received"] == 1 and lab.server.stats["sessions"] == 3


def test_a_refused_login_and_a_refused_upload_answer_as_the_server_does(tmp_path):
    lab = Lab(tmp_path)
    lab.get(credentials=Credentials("alice", "wrong"))
    lab.put("not-uploads.log", b"x")
    lab.clock.advance(60)
    (first_at, first), (second_at, second) = sorted(lab.results, key=lambda r: r[0])
    assert (second.status, second.detail) == ("denied", "FTP: 530 Authentication failed.")
    assert second_at == pytest.approx(6 * HOP + 0.5)  # the server's delayed 530, on the clock
    assert (first.status, first.detail) == ("not_found", "FTP: 550 Not enough privileges.")
    assert lab.server.stats["logins_failed"] == 1 and not os.path.exists(tmp_path / "not-uploads.log")


def test_a_stop_in_the_middle_of_an_exchange_closes_it_and_a_restarted_server_knows_none_of_it(tmp_path):
    lab = Lab(tmp_path, ActiveFault("slow", "ftp", delay_s=0.5))
    lab.get()
    lab.clock.advance(1.7)  # USER, PASS, TYPE I held and answered; PASV held until ~2.0
    old_ports = set(lab.server.ports.listening)
    lab.stop()
    lab.clock.advance(0.5)
    [(when, result)] = lab.results
    assert when == pytest.approx(1.7 + HOP)  # the close, one hop to the phone
    assert result.status == "error" and result.detail.startswith("FTP: the server closed the connection")
    lab.get()  # while stopped: nothing listens
    lab.clock.advance(1)
    assert lab.results[-1][1].detail == "FTP: connection refused"
    lab.start()
    assert set(lab.server.ports.listening) == {PORT} and old_ports == {PORT}
    lab.get()
    lab.clock.advance(10)
    assert lab.results[-1][1].status == "ok"
    assert lab.server.stats["sessions"] == 1  # the new server's counters: only its own session
    assert len(lab.clock) == 0


def test_a_stop_after_pasv_forgets_the_data_port(tmp_path):
    lab = Lab(tmp_path)
    script = Script(["USER alice", "PASS s3cret", "PASV"])
    lab.reactor.connectTCP("127.0.0.1", PORT, factory_of(script))
    lab.clock.advance(1)
    pasv = script.replies[-1]
    p1, p2 = map(int, pasv.rstrip(").").rsplit(",", 2)[1:])
    lab.stop()
    lab.start()
    sink = Sink()
    failed = []
    factory = factory_of(sink)
    factory.clientConnectionFailed = lambda connector, reason: failed.append(reason.type.__name__)
    lab.reactor.connectTCP("127.0.0.1", p1 * 256 + p2, factory)
    lab.clock.advance(1)
    assert failed == ["ConnectionRefusedError"]


def test_down_closes_a_new_connection_before_the_greeting(tmp_path):
    lab = Lab(tmp_path, ActiveFault("off", "ftp", down=True))
    lab.get()
    lab.clock.advance(60)
    [(when, result)] = lab.results
    assert when == pytest.approx(2 * HOP)  # accepted, closed at once: the FIN right behind the SYN-ACK
    assert result.detail.startswith("FTP: the server closed the connection")
    assert lab.faults.stats["refused"] == 1 and lab.server.stats["sessions"] == 0


def test_a_delay_holds_every_command_the_server_reads(tmp_path):
    lab = Lab(tmp_path, ActiveFault("slow", "ftp", delay_s=0.2))
    lab.get()
    lab.clock.advance(60)
    [(when, result)] = lab.results
    assert result.status == "ok" and when == pytest.approx(5 * 0.2 + 12 * HOP)
    assert lab.faults.stats["delayed"] == 6  # and the QUIT, read after the phone had its file


def test_bandwidth_paces_the_data_connection_on_the_clock(tmp_path):
    lab = Lab(tmp_path, ActiveFault("thin", "ftp", direction="out", bandwidth_kbps=8))
    lab.get()
    lab.clock.advance(60)
    [(when, result)] = lab.results
    assert result.body == BODY and when == pytest.approx(len(BODY) * 8 / 8000 + 12 * HOP, abs=1e-6)
    assert lab.faults.stats["throttled"] == 1


def test_the_phones_time_limit_is_a_timer_on_the_clock_and_the_server_reads_the_reset(tmp_path):
    lab = Lab(tmp_path, ActiveFault("stuck", "ftp", delay_s=40))
    lab.get()
    lab.clock.advance(30.5)
    [(when, result)] = lab.results
    assert when == 30.0 and result.status == "timeout"
    lab.clock.advance(60)
    assert lab.server.loop.socket_map.keys() == {lab.server.server._fileno}  # the session closed on the reset
    assert len(lab.clock) == 0


def test_an_idle_session_is_closed_by_the_servers_timer(tmp_path):
    lab = Lab(tmp_path, idle_timeout_s=5.0)
    script = Script([])
    sink_lost = []
    script.connectionLost = lambda reason: sink_lost.append(lab.clock.seconds())
    lab.reactor.connectTCP("127.0.0.1", PORT, factory_of(script))
    lab.clock.advance(10)
    assert script.replies == ["220 labsim FTP server ready.", "421 Control connection timed out."]
    assert sink_lost == [pytest.approx(5.0 + 2 * HOP)]


def test_the_same_exchanges_give_the_same_times_twice(tmp_path):
    def times(folder):
        folder.mkdir()
        lab = Lab(folder, ActiveFault("jitter", "ftp", delay_s=0.05, jitter_s=0.2))
        for n in range(5):
            lab.get()
            lab.get(f"missing-{n}.cfg")
        lab.clock.advance(60)
        return [(when, result.status) for when, result in lab.results]

    first = times(tmp_path / "a")
    assert first == times(tmp_path / "b") and len({when for when, _ in first}) > 2


def test_a_file_larger_than_the_servers_buffers_goes_in_several_writes_and_reads(tmp_path):
    # pyftpdlib sends 64 KiB a write and reads 64 KiB a recv: the loop checks the data
    # channel again after each one that moved bytes, as epoll would report it again.
    big = bytes(range(256)) * 1000  # 256,000 bytes: four writes of the file producer
    (tmp_path / "firmware.rom").write_bytes(big)
    lab = Lab(tmp_path)
    lab.get("firmware.rom")
    lab.put("uploads/backup.bin", big)
    lab.clock.advance(60)
    assert sorted(result.status for _, result in lab.results) == ["ok", "ok"]
    assert [result.body for _, result in lab.results if result.body] == [big]
    assert (tmp_path / "uploads" / "backup.bin").read_bytes() == big
    stats = lab.server.stats
    assert (stats["bytes_sent"], stats["bytes_received"]) == (len(big), len(big))
    assert len(lab.clock) == 0


def test_an_upload_whose_stor_is_held_waits_for_it_rather_than_losing_the_file(tmp_path):
    # The client sends the file as soon as the data connection opens; under a delay the
    # STOR reaches the server's handler later: the data channel waits for it.
    lab = Lab(tmp_path, ActiveFault("slow", "ftp", delay_s=0.2))
    lab.put("uploads/0004f2000001-app.log", b"log line\n")
    lab.clock.advance(60)
    [(when, result)] = lab.results
    assert result.status == "ok" and when == pytest.approx(5 * 0.2 + 12 * HOP)
    assert (tmp_path / "uploads" / "0004f2000001-app.log").read_bytes() == b"log line\n"
