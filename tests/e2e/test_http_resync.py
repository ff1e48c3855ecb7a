"""A resync as phones and trainers' tools do it, against ``labsim serve`` (the scenario's
HTTP service, its own process): fetch, then ask again with the validators from the first
answer (If-None-Match, If-Modified-Since: 304, no body), and resume a cut-off download
with Range / If-Range."""

from __future__ import annotations

import http.client

import pytest

from tests.peers import free_tcp_port, free_udp_port
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

CONFIG = "#!version:1.0.0.1\naccount.1.enable = 1\n" * 50


@pytest.fixture
def served(tmp_path):
    port = free_tcp_port()
    scenario = tmp_path / "serve.yaml"
    body = "".join(f"      {line}\n" for line in CONFIG.splitlines())
    scenario.write_text(f"""\
name: http-resync
services:
  dhcp: {{port: {free_udp_port()}}}
  http: {{port: {port}}}
provisioning:
  files:
    y000000000066.cfg: |
{body}fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""")
    with labsim_serve(str(scenario), str(tmp_path / "r")) as serve:
        serve.wait_for("labsim serve:")  # printed once every service listens
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        yield connection
        connection.close()
        serve.stop()
        assert "Traceback" not in serve.stderr, serve.stderr[-3000:]


def ask(connection, method="GET", **fields):
    connection.request(method, "/y000000000066.cfg", headers={k.replace("_", "-"): v for k, v in fields.items()})
    response = connection.getresponse()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_resync_with_validators_and_a_resumed_download(served):
    expected = CONFIG.encode()
    status, headers, body = ask(served, User_Agent="Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01")
    assert (status, body) == (200, expected)
    etag, last_modified = headers["etag"], headers["last-modified"]
    assert headers["accept-ranges"] == "bytes"
    # all over the one keep-alive connection: a 304 must leave it in step
    assert ask(served, If_None_Match=etag)[::2] == (304, b"")
    assert ask(served, If_Modified_Since=last_modified)[::2] == (304, b"")
    assert ask(served, "HEAD", If_None_Match=etag)[0] == 304
    status, headers, head = ask(served, "HEAD")
    assert (status, head, headers["etag"], headers["content-length"]) == (200, b"", etag, str(len(expected)))
    cut = 700
    status, headers, rest = ask(served, Range=f"bytes={cut}-", If_Range=etag)
    assert (status, headers["content-range"]) == (206, f"bytes {cut}-{len(expected) - 1}/{len(expected)}")
    assert expected[:cut] + rest == expected
    assert ask(served, Range=f"bytes={cut}-", If_Range='"an-older-version"')[::2] == (200, expected)
    assert ask(served, Range=f"bytes={len(expected)}-")[0] == 416
    assert ask(served)[::2] == (200, expected)
