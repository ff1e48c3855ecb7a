"""One client cannot lock the others out of ``labsim serve``, and the protocol corners an
outside tester found are closed (issue 13), each checked on a real socket (several
127.0.0.x source addresses stand for several clients) or with a real client (curl, lftp):

- FTP and DNS over TCP limit open connections per client address and go on serving
  other addresses while one holds its maximum;
- HTTP drops a connection whose request headers trickle in past the deadline, while
  others are served; idle timeouts are the scenario's;
- a 20 KB FTP command gets exactly one reply; LIST/MLSD say nothing about symlinks that
  lead outside the root; MLSD carries UNIX.mode, so lftp's mirror keeps file modes;
- an HTTP/1.1 request without Host gets 400 (RFC 9112 3.2).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess
import time

import pytest

from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port, require_binary
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

LIMIT = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fair")
    files = tmp / "files"
    (files / "sub").mkdir(parents=True)
    (files / "a.cfg").write_text("a = 1\n")
    (files / "sub" / "b.cfg").write_text("b = 2\n")
    os.chmod(files / "a.cfg", 0o640)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s" * 12345)
    os.symlink(outside / "secret.txt", files / "leak-file")
    os.symlink(outside, files / "leak-dir")
    os.symlink("a.cfg", files / "inside-link")
    ports = {"http": free_tcp_port(), "ftp": free_tcp_port(), "dns": free_port_udp_and_tcp()}
    scenario = tmp / "serve.yaml"
    scenario.write_text(f"""\
name: fairness
services:
  dhcp: {{port: {free_udp_port()}}}
  http: {{port: {ports['http']}, header_timeout_s: 1.0, idle_timeout_s: 30}}
  ftp: {{port: {ports['ftp']}, anonymous: true, max_connections_per_address: {LIMIT}, idle_timeout_s: 4}}
  dns:
    port: {ports['dns']}
    records: [{{name: prov.lab, type: A, value: 127.0.0.1}}]
    tcp_max_connections_per_address: {LIMIT}
    tcp_idle_timeout_s: 1.5
provisioning:
  directory: files
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""")
    with labsim_serve(str(scenario), str(tmp / "report")) as serve:
        serve.wait_for("Ctrl-C to stop")
        yield {"ports": ports, "tmp": tmp}
        serve.stop()


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


_readers: dict[socket.socket, object] = {}


def reply_line(sock: socket.socket) -> bytes:
    """The next line from ``sock``; several replies in one segment stay apart."""
    if sock not in _readers:
        _readers[sock] = sock.makefile("rb")
    return _readers[sock].readline()


def closed_soon(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def dns_query_tcp(sock: socket.socket, name: str = "prov.lab") -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack("!2H", 1, 1)
    message = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + question
    sock.sendall(struct.pack("!H", len(message)) + message)
    (length,) = struct.unpack("!H", sock.recv(2))
    return sock.recv(length)


def test_ftp_limits_connections_per_address_and_serves_the_others(lab):
    port = lab["ports"]["ftp"]
    held = [connect_from("127.0.0.2", port) for _ in range(LIMIT)]
    try:
        assert all(reply_line(s).startswith(b"220") for s in held)
        extra = connect_from("127.0.0.2", port)
        assert reply_line(extra).startswith(b"421"), "the address already holds its maximum"
        extra.close()
        other = connect_from("127.0.0.3", port)
        assert reply_line(other).startswith(b"220")
        other.sendall(b"USER anonymous\r\n")
        assert reply_line(other).startswith(b"331")
        other.close()
    finally:
        for s in held:
            s.close()


def test_ftp_idle_timeout_is_the_scenarios(lab):
    sock = connect_from("127.0.0.4", lab["ports"]["ftp"])
    assert reply_line(sock).startswith(b"220")
    started = time.monotonic()
    assert reply_line(sock).startswith(b"421")  # pyftpdlib's idle timeout answer
    assert closed_soon(sock, 3)
    assert 3.5 < time.monotonic() - started < 7.0


def test_dns_tcp_limits_connections_per_address_and_serves_the_others(lab):
    port = lab["ports"]["dns"]
    held = [connect_from("127.0.0.5", port) for _ in range(LIMIT)]
    try:
        time.sleep(0.2)
        extra = connect_from("127.0.0.5", port)
        assert closed_soon(extra, 1.0), "over the address's maximum: closed at once"
        other = connect_from("127.0.0.6", port)
        answer = dns_query_tcp(other)
        assert answer[:2] == b"\x42\x42" and answer[-4:] == bytes([127, 0, 0, 1])
        other.close()
    finally:
        for s in held:
            s.close()


def test_dns_tcp_idle_timeout_is_the_scenarios(lab):
    sock = connect_from("127.0.0.7", lab["ports"]["dns"])
    started = time.monotonic()
    assert closed_soon(sock, 4.0)
    assert 1.0 < time.monotonic() - started < 4.0


def test_http_drops_a_request_whose_headers_trickle_in_and_serves_others(lab):
    port = lab["ports"]["http"]
    slow = connect_from("127.0.0.8", port)
    started = time.monotonic()
    request = b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100
    closed = False
    for byte in request:  # one byte every 0.1 s: never idle, never finished
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.1)
        if time.monotonic() - started > 1.0:
            other = connect_from("127.0.0.9", port)
            other.sendall(b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert other.recv(100).startswith(b"HTTP/1.1 200")
            other.close()
    assert closed or closed_soon(slow, 2.0)
    assert time.monotonic() - started < 4.0, "the header deadline is 1 s (swept every 0.25 s)"


def test_http11_without_host_gets_400_with_curl(lab):
    url = f"http://127.0.0.1:{lab['ports']['http']}/a.cfg"
    curl = require_binary("curl")
    no_host = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host:", url],
                             capture_output=True, text=True, timeout=10)
    assert no_host.stdout == "400"
    with_host = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                               capture_output=True, text=True, timeout=10)
    assert with_host.stdout == "200"
    http10 = subprocess.run([curl, "-s", "-0", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host:", url],
                            capture_output=True, text=True, timeout=10)
    assert http10.stdout == "200"  # HTTP/1.0 had no Host requirement
    two = connect_from("127.0.0.10", lab["ports"]["http"])
    two.sendall(b"GET /a.cfg HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n")
    assert two.recv(100).startswith(b"HTTP/1.1 400")
    two.close()


def ftp_session(port: int, source: str) -> socket.socket:
    sock = connect_from(source, port)
    assert reply_line(sock).startswith(b"220")
    sock.sendall(b"USER anonymous\r\n")
    reply_line(sock)
    sock.sendall(b"PASS x\r\n")
    assert reply_line(sock).startswith(b"230")
    return sock


def test_a_20kb_ftp_command_gets_exactly_one_reply(lab):
    sock = ftp_session(lab["ports"]["ftp"], "127.0.0.11")
    sock.sendall(b"NOOP " + b"A" * 20_000 + b"\r\n")
    assert reply_line(sock).startswith(b"500")
    sock.sendall(b"PWD\r\n")
    assert reply_line(sock).startswith(b"257"), "the next reply answers the next command"
    sock.sendall(b"NOOP\r\n")
    assert reply_line(sock).startswith(b"200")
    sock.close()


def passive_listing(sock: socket.socket, command: bytes) -> bytes:
    sock.sendall(b"PASV\r\n")
    reply = reply_line(sock).decode()
    numbers = reply[reply.index("(") + 1:reply.index(")")].split(",")
    # From the control connection's own address: pyftpdlib refuses a data connection from another.
    data = connect_from(sock.getsockname()[0], int(numbers[4]) * 256 + int(numbers[5]))
    sock.sendall(command + b"\r\n")
    assert reply_line(sock)[:3] in (b"125", b"150")
    body = b""
    while chunk := data.recv(65536):
        body += chunk
    data.close()
    assert reply_line(sock).startswith(b"226")
    return body


def test_ftp_listings_leak_nothing_about_symlinks_leading_outside(lab):
    sock = ftp_session(lab["ports"]["ftp"], "127.0.0.12")
    listing = passive_listing(sock, b"LIST").decode()
    mlsd = passive_listing(sock, b"MLSD").decode()
    for text in (listing, mlsd):
        assert "leak" not in text and "secret" not in text and "12345" not in text
        assert str(lab["tmp"]) not in text and "outside" not in text
        assert "a.cfg" in text and "sub" in text
    assert "inside-link -> /a.cfg" in listing  # a link inside shows its target as a path on the server
    sock.sendall(b"SIZE leak-file\r\n")
    assert reply_line(sock)[:1] == b"5"
    sock.close()


def test_mlsd_gives_unix_mode_so_lftp_mirror_keeps_modes(lab):
    lftp = require_binary("lftp")
    into = lab["tmp"] / "mirror"
    result = subprocess.run(
        [lftp, "-c", f"set net:max-retries 1; set net:timeout 5; open -u anonymous,x "
                     f"ftp://127.0.0.1:{lab['ports']['ftp']}; mirror --no-symlinks sub {into / 'sub'}; "
                     f"mirror --no-symlinks -I a.cfg . {into / 'top'}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    b_mode = stat.S_IMODE((into / "sub" / "b.cfg").stat().st_mode)
    a_mode = stat.S_IMODE((into / "top" / "a.cfg").stat().st_mode)
    assert b_mode != 0 and a_mode != 0
    assert a_mode == 0o640, oct(a_mode)  # the server's own mode, carried by UNIX.mode
