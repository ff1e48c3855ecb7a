"""Malformed, truncated, oversized and out-of-order input thrown at labsim's HTTP and FTP
servers over real sockets (hypothesis): nothing escapes, the process keeps running, and
the next valid client is still served."""

import ftplib
import http.client
import io
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.peers import free_tcp_port, free_udp_port
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

BODY = b"#!version:1.0.0.1\nlang.gui = English\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    http_port, ftp_port = free_tcp_port(), free_tcp_port()
    scenario = tmp / "serve.yaml"
    scenario.write_text(f"""\
name: bad-input
services:
  dhcp: {{port: {free_udp_port()}}}
  http: {{port: {http_port}}}
  ftp: {{port: {ftp_port}, users: {{phone: s3cret}}, anonymous: true}}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      lang.gui = English
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""")
    with labsim_serve(str(scenario), str(tmp / "r")) as serve:
        serve.wait_for("labsim serve:")  # printed once every service listens
        yield {"http": http_port, "ftp": ftp_port, "proc": serve.proc}
        serve.stop()
        assert "Traceback" not in serve.stderr, serve.stderr[-3000:]


def throw(port: int, chunks: list[bytes], read: bool = True) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.settimeout(0.2)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                return  # the server closed on us: that is an allowed answer to junk
        if read:
            try:
                sock.recv(65536)
            except OSError:
                pass


http_junk = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda method, path, version, headers, tail: b" ".join([method, path, version]) + b"\r\n" + headers + tail,
              st.sampled_from([b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"G\x00T", b"", b"BREW"]),
              st.one_of(st.sampled_from([b"/", b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd", b"*",
                                         b"/y000000000066.cfg?" + b"a" * 5000, b"//", b"/\xff\xfe"]),
                        st.binary(max_size=200)),
              st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"", b"HTTP/1.1 extra"]),
              st.binary(max_size=300),
              st.sampled_from([b"\r\n", b"", b"Content-Length: 99999999\r\n\r\nabc", b"Content-Length: -1\r\n\r\n",
                               b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", b"Host: " + b"h" * 70000 + b"\r\n\r\n"])),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(http_junk, min_size=1, max_size=3))
def test_http_server_survives_junk(served, chunks):
    throw(served["http"], chunks)
    assert served["proc"].poll() is None


def test_http_server_still_serves_a_valid_client_after_the_junk(served):
    connection = http.client.HTTPConnection("127.0.0.1", served["http"], timeout=5)
    connection.request("GET", "/y000000000066.cfg")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == BODY
    connection.request("GET", "/../../etc/passwd")
    assert connection.getresponse().status in (400, 403, 404)


ftp_commands = st.one_of(
    st.binary(max_size=600).map(lambda raw: raw + b"\r\n"),
    st.builds(lambda verb, arg: verb + b" " + arg + b"\r\n",
              st.sampled_from([b"USER", b"PASS", b"RETR", b"STOR", b"CWD", b"PASV", b"PORT", b"EPSV", b"LIST",
                               b"TYPE", b"REST", b"SIZE", b"DELE", b"RNFR", b"RNTO", b"MKD", b"QUIT", b"ABOR"]),
              st.one_of(st.sampled_from([b"anonymous", b"phone", b"s3cret", b"../../etc/passwd", b"/etc/passwd",
                                         b"127,0,0,1,0,21", b"10,0,0,1,0,80", b"I", b"A", b"-1", b"x" * 5000]),
                        st.binary(max_size=100).filter(lambda b: b"\r" not in b and b"\n" not in b))),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(ftp_commands, min_size=1, max_size=6))
def test_ftp_server_survives_junk_and_out_of_order_commands(served, commands):
    throw(served["ftp"], commands)
    assert served["proc"].poll() is None


def test_ftp_server_still_serves_a_valid_client_after_the_junk(served):
    deadline = time.monotonic() + 10
    while True:
        try:
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", served["ftp"], timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ftp.login("phone", "s3cret")
    out = io.BytesIO()
    ftp.retrbinary("RETR y000000000066.cfg", out.write)
    assert out.getvalue() == BODY
    with pytest.raises(ftplib.error_perm):
        ftp.retrbinary("RETR ../../etc/passwd", io.BytesIO().write)
    ftp.quit()
