"""Two services on the same address, transport and port are a scenario error, located.

DNS listens on UDP and TCP, so its port clashes with HTTP/FTP (TCP) as well as with
DHCP/TFTP/PnP (UDP). Lines and columns are computed from each test's own YAML text."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labsim import cli
from labsim.scenario.checks import port_clashes
from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.scenario.schema import DnsService, FtpService
from labsim.scenario.yaml_marks import Mark, load_marked

REPO = Path(__file__).resolve().parents[2]

FLEET = """\
fleets:
  - {vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}
"""


def scenario(services: str, fleet: str = FLEET) -> str:
    return "name: t\nservices:\n  dhcp: {}\n" + textwrap.indent(textwrap.dedent(services), "  ") + fleet


def locate(text: str, needle: str, occurrence: int = 1) -> Mark:
    """1-based line and column of the ``occurrence``-th ``needle`` in ``text``."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    return Mark(text.count("\n", 0, start) + 1, start - (text.rfind("\n", 0, start) + 1) + 1)


def line_of(text: str, needle: str) -> int:
    return locate(text, needle).line


def clashes(text: str) -> list:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "s.yaml")
    return [p for p in caught.value.problems if "clashes" in p.message]


def test_dns_on_the_http_port_is_an_error_at_the_dns_port_naming_http():
    text = scenario("""\
        http:
          port: 8053
        dns:
          port: 8053
        """)
    [problem] = clashes(text)
    assert problem.field == "services.dns.port"
    assert problem.mark == locate(text, "port: 8053", 2)
    assert f"services.http.port (line {line_of(text, 'port: 8053')})" in problem.message
    assert "TCP 8053 at 127.0.0.1" in problem.message
    assert str(problem).startswith(f"s.yaml:{problem.mark.line}:{problem.mark.column}: services.dns.port: port 8053")


def test_the_error_points_at_the_port_that_is_written_when_the_other_is_a_default():
    # ftp's port is its default; the DNS port the user wrote is where the problem is.
    ftp_default = FtpService.model_fields["port"].default
    text = scenario(f"""\
        dns:
          port: {ftp_default}
        ftp: {{anonymous: true}}
        """)
    [problem] = clashes(text)
    assert problem.field == "services.dns.port"
    assert problem.mark == locate(text, f"port: {ftp_default}")
    assert "services.ftp.port (its default)" in problem.message and "TCP" in problem.message

    # and the other way round: HTTP written on DNS's default port, DNS section first
    dns_default = DnsService.model_fields["port"].default
    text = scenario(f"""\
        dns: {{}}
        http:
          port: {dns_default}
        """)
    [problem] = clashes(text)
    assert problem.field == "services.http.port"
    assert problem.mark == locate(text, f"port: {dns_default}")
    assert "services.dns.port (its default)" in problem.message


def test_dns_clashes_over_udp_too():
    text = scenario("""\
        tftp: {port: 7000}
        dns: {port: 7000}
        """)
    [problem] = clashes(text)
    assert problem.field == "services.dns.port"
    assert problem.mark == locate(text, "port: 7000", 2)
    assert "services.tftp.port" in problem.message and "UDP 7000" in problem.message


def test_two_tcp_services_both_written_the_later_one_is_reported():
    text = scenario("""\
        http: {port: 7100}
        ftp: {port: 7100, anonymous: true}
        """)
    [problem] = clashes(text)
    assert problem.field == "services.ftp.port"
    assert problem.mark.line == line_of(text, "ftp:")
    assert f"services.http.port (line {line_of(text, 'http:')})" in problem.message


def test_any_address_clashes_with_every_address():
    text = scenario("""\
        http: {address: 0.0.0.0, port: 7200}
        dns: {address: 127.0.0.5, port: 7200}
        """)
    [problem] = clashes(text)
    assert "127.0.0.5 and 0.0.0.0 (0.0.0.0 is every address)" in problem.message


@pytest.mark.parametrize("services", [
    "http: {port: 7300}\ndns: {address: 127.0.0.2, port: 7300}\n",  # different addresses
    "http: {port: 7300}\ntftp: {port: 7300}\n",  # TCP and UDP do not share a port
    "pnp: {port: 7300, url: 'http://127.0.0.1/'}\nftp: {port: 7300}\n",
    "http: {port: 0}\ndns: {port: 0}\n",  # 0: the kernel picks, never the same
    "dns: {port: 7301}\nhttp: {port: 7300}\n",
])
def test_no_clash(services):
    parse_scenario_text(scenario(services), "s.yaml")  # raises ScenarioError on any problem


def test_reported_beside_other_problems_in_the_same_file():
    text = scenario("""\
        http: {port: 7400}
        dns: {port: 7400, records: [{name: a.lab, type: A, value: not-an-address}]}
        """, fleet=FLEET.replace("yealink", "nosuchvendor"))
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "s.yaml")
    fields = [p.field for p in caught.value.problems]
    assert "services.dns.port" in fields
    assert len(caught.value.problems) >= 3  # the bad record and the bad vendor are reported as well


def test_pure_check_on_a_marked_document():
    doc = load_marked(scenario("dns: {port: 7500}\npnp: {port: 7500, url: 'http://127.0.0.1/'}\n"))
    [(path, message)] = port_clashes(doc)
    assert path == ("services", "pnp", "port") and "UDP 7500" in message


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_have_no_clash(path):
    assert port_clashes(load_marked(path.read_text())) == []


def test_cli_validate_prints_the_located_clash(tmp_path, capsys):
    text = scenario("http: {port: 7600}\ndns: {port: 7600}\n")
    path = tmp_path / "clash.yaml"
    path.write_text(text)
    assert cli.main(["validate", str(path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    mark = locate(text, "port: 7600", 2)
    assert f"{path}:{mark.line}:{mark.column}: services.dns.port: port 7600 clashes with services.http.port" in err
