"""A scenario's DHCP options are named, checked and encoded once, when the scenario loads;
the lab, the server and the timeline take the encoded payloads as they are."""

from labsim.scenario.loader import parse_scenario_text
from labsim.services.dhcp import DhcpServer
from labsim.services.lab import dhcp_config
from labsim.wire import dhcp_options

SCENARIO = """\
name: options
services:
  dhcp:
    subnet: 10.7.0.0/24
    pool: {start: 10.7.0.10, end: 10.7.0.12}
    options: {66: "http://127.0.0.1:8080/", router: 10.7.0.1}
    classes:
      - {name: avaya, match: {vendor_class: {prefix: Nortel}}, options: {tftp_server_name: 127.0.0.1}}
fleets:
  - {vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}
timeline:
  - at: 10
    do: {set_dhcp_option: {66: "http://127.0.0.1:8081/"}}
"""


def test_options_are_encoded_on_load_and_never_again(monkeypatch):
    calls = []
    encode = dhcp_options.encode_option_value
    monkeypatch.setattr(dhcp_options, "encode_option_value", lambda code, value: calls.append(code) or encode(code, value))
    scenario = parse_scenario_text(SCENARIO, "s.yaml")
    assert sorted(calls) == [3, 66, 66, 66]  # global 66 and router, the class's 66, the timeline's 66
    spec = scenario.services.dhcp
    assert spec.options == {66: b"http://127.0.0.1:8080/", 3: bytes([10, 7, 0, 1])}
    assert isinstance(spec.options, dhcp_options.EncodedOptions)
    server = DhcpServer(dhcp_config(spec))
    assert server.set_options(scenario.timeline[0].do.set_dhcp_option) == [66]  # what the timeline does
    assert sorted(calls) == [3, 66, 66, 66]  # the lab, the server and the timeline encoded nothing again
    assert server.config.options[66] == b"http://127.0.0.1:8081/"
    assert server.remove_options(["router"]) == [3] and 3 not in server.config.options
    assert server.config.classes[0].options == {66: b"127.0.0.1"}
