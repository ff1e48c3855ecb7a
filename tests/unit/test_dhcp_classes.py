"""Client classes: per-vendor options chosen by option 60 (matching rules, the server's use
of them, and the scenario syntax with its validation errors)."""

from __future__ import annotations

import pytest

from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.services.dhcp_classes import CACHE_LIMIT, ClientClass, ClientClassifier, VendorClassMatch
from labsim.services.lab import dhcp_config
from labsim.wire import dhcp
from labsim.wire.dhcp import ACK, DISCOVER, OFFER, REQUEST, DhcpMessage


def cls(name: str, kind: str, value: str, **options: bytes) -> ClientClass:
    return ClientClass(name, VendorClassMatch(kind, value), {int(k[1:]): v for k, v in options.items()})


# -- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, pattern, sent, matches",
    [
        ("equals", "yealink", b"yealink", True),
        ("equals", "yealink", b"yealink2", False),
        ("equals", "yealink", b"Yealink", False),  # case-sensitive, as Kea and ISC dhcpd
        ("equals", "Nortel-SIP-Phone-A", b"Nortel-SIP-Phone-A\x00", True),  # Avaya's trailing NUL
        ("equals", "Nortel-SIP-Phone-A", b"Nortel-SIP-Phone-A\x00\x00", True),
        ("equals", "a\x00b", b"a\x00b", True),  # only trailing NULs go
        ("prefix", "yealink", b"yealink SIP-T46S", True),
        ("prefix", "yealink", b"my yealink", False),
        ("prefix", "Nortel-SIP-Phone-A", b"Nortel-SIP-Phone-A\x00", True),
        ("regex", "T4[68]S$", b"yealink T46S", True),
        ("regex", "^T4", b"yealink T46S", False),  # searched, anchors honoured
        ("regex", "(?i)^YEALINK", b"yealink", True),
        ("regex", "Polycom", b"\x00\x00\x36\x3d\x07\x01\x07Polycom\x02\x03VVX", True),  # binary payload
        ("regex", "a.b", b"a\nb", True),  # DOTALL: binary bytes may be newlines
        ("regex", "\xe9", b"\xe9", True),  # bytes are Latin-1 characters
    ],
)
def test_vendor_class_matching(kind, pattern, sent, matches):
    classifier = ClientClassifier([cls("x", kind, pattern)])
    assert (classifier.classify(sent) is not None) is matches


def test_first_matching_class_wins_and_no_option_60_matches_nothing():
    first, second = cls("first", "prefix", "yea"), cls("second", "equals", "yealink")
    classifier = ClientClassifier([first, second])
    assert classifier.classify(b"yealink") is first
    assert classifier.classify(None) is None
    assert classifier.classify(b"cisco") is None


def test_classification_cache_is_bounded():
    classifier = ClientClassifier([cls("x", "regex", "^7")])
    for n in range(CACHE_LIMIT + 50):
        assert (classifier.classify(str(n).encode()) is not None) is str(n).startswith("7")
    assert len(classifier._cache) <= CACHE_LIMIT


@pytest.mark.parametrize(
    "kind, value, message",
    [("regex", "yea(", "bad regular expression"), ("glob", "x", "one of equals, prefix, regex"), ("equals", "", "non-empty")],
)
def test_bad_matches_are_explained(kind, value, message):
    with pytest.raises(ValueError, match=message):
        VendorClassMatch(kind, value)


def test_class_names_must_be_unique():
    with pytest.raises(ValueError, match="repeated: a"):
        ClientClassifier([cls("a", "equals", "x"), cls("a", "equals", "y")])


# -- the server ------------------------------------------------------------------------------


def discover(mac: bytes, vendor: bytes | None = None, prl: bytes | None = None, **kw) -> DhcpMessage:
    options = {53: bytes([DISCOVER])}
    if vendor is not None:
        options[60] = vendor
    if prl is not None:
        options[55] = prl
    return DhcpMessage(dhcp.BOOTREQUEST, 1, mac, options, **kw)


def make_server(classes, **options: bytes) -> DhcpServer:
    return DhcpServer(DhcpServerConfig(
        server_id="127.0.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.50",
        lease_time_s=1000, options={int(k[1:]): v for k, v in options.items()}, classes=classes,
    ))  # fmt: skip


def test_class_options_override_and_add_to_the_global_ones():
    yealink = cls("yealink", "prefix", "yealink", o66=b"http://yealink/", o43=b"\x01\x02ab", o58=(100).to_bytes(4, "big"))
    server = make_server([yealink], o66=b"tftp://global/", o6=b"\x0a\x01\x00\x01")
    mac = bytes.fromhex("001565000001")
    [reply] = server.handle(discover(mac, b"yealink", prl=bytes([66, 43, 6])), 0)
    offer = dhcp.decode(dhcp.encode(reply.message))
    assert offer.options[66] == b"http://yealink/" and offer.options[43] == b"\x01\x02ab"
    assert offer.options[6] == b"\x0a\x01\x00\x01"  # global option kept
    assert offer.option_u32(58) == 100 and offer.option_u32(59) == 875  # T1 from the class
    assert list(offer.options)[5:8] == [66, 43, 6]  # still the client's order

    [reply] = server.handle(discover(bytes.fromhex("001565000002"), b"Cisco-SPA"), 0)
    other = reply.message
    assert other.options[66] == b"tftp://global/" and 43 not in other.options and other.option_u32(58) == 500

    [reply] = server.handle(discover(bytes.fromhex("001565000003")), 0)  # no option 60 at all
    assert reply.message.options[66] == b"tftp://global/"


def test_acks_are_counted_per_class():
    server = make_server([cls("avaya", "equals", "Nortel-SIP-Phone-A")])
    mac = bytes.fromhex("001765000001")
    [offer] = server.handle(discover(mac, b"Nortel-SIP-Phone-A\x00"), 0)
    request = DhcpMessage(dhcp.BOOTREQUEST, 2, mac, {
        53: bytes([REQUEST]), 60: b"Nortel-SIP-Phone-A\x00",
        50: dhcp.encode_ip_list([offer.message.yiaddr]), 54: dhcp.encode_ip_list(["127.0.0.1"]),
    })  # fmt: skip
    [ack] = server.handle(request, 1)
    assert offer.message.message_type == OFFER and ack.message.message_type == ACK
    assert server.stats["class_avaya"] == 1
    assert server.classify(request).name == "avaya"


def test_a_class_may_not_set_what_the_server_manages():
    with pytest.raises(ValueError, match="class 'bad'.*option 51"):
        make_server([cls("bad", "equals", "x", o51=b"\x00\x00\x00\x01")])


# -- the scenario syntax ------------------------------------------------------------------------

SCENARIO = """\
name: classes
services:
  dhcp:
    options: {{66: "tftp://10.1.0.5/"}}
    classes:
{classes}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""


def scenario(classes: str):
    return parse_scenario_text(SCENARIO.format(classes=classes), "s.yaml")


def problems(classes: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        scenario(classes)
    return [str(p) for p in caught.value.problems]


def test_scenario_classes_reach_the_server():
    spec = scenario(
        '      - {name: yealink, match: {vendor_class: {prefix: "yealink"}}, options: {66: "http://y/", vendor_specific: "abc"}}\n'
        '      - {name: avaya, match: {vendor_class: {equals: "Nortel-SIP-Phone-A"}}, options: {tftp_servers: [10.1.0.7]}}\n'
        '      - {name: poly, match: {vendor_class: {regex: "(?i)polycom"}}}\n'
    ).services.dhcp
    server = DhcpServer(dhcp_config(spec))
    replies = {
        name: server.handle(discover(bytes([0, 1, 2, 3, 4, n]), vendor), 0)[0].message
        for n, (name, vendor) in enumerate([("y", b"yealink"), ("a", b"Nortel-SIP-Phone-A\x00"), ("p", b"POLYCOM"), ("n", None)])
    }
    assert replies["y"].options[66] == b"http://y/" and replies["y"].options[43] == b"abc"
    assert replies["a"].options[66] == b"tftp://10.1.0.5/" and replies["a"].options[150] == bytes([10, 1, 0, 7])
    assert replies["p"].options[66] == b"tftp://10.1.0.5/" and 150 not in replies["p"].options
    assert replies["n"].options[66] == b"tftp://10.1.0.5/" and 43 not in replies["n"].options


@pytest.mark.parametrize(
    "classes, where, message",
    [
        ('      - {name: a, match: {vendor_class: {regex: "yea(link"}}}\n',
         "services.dhcp.classes[0].match.vendor_class.regex", "bad regular expression 'yea(link': missing ), unterminated subpattern"),
        ('      - {name: a, match: {vendor_class: {prefix: x, equals: y}}}\n',
         "services.dhcp.classes[0].match.vendor_class", "give exactly one of equals, prefix, regex, not equals and prefix"),
        ('      - {name: a, match: {vendor_class: {}}}\n', "services.dhcp.classes[0].match.vendor_class", "give exactly one"),
        ('      - {name: a, match: {vendor_class: {glob: x}}}\n', "services.dhcp.classes[0].match.vendor_class.glob", "unknown key"),
        ('      - {name: a, match: {vendor_class: {prefix: x}}, options: {66: [1, 2]}}\n',
         "services.dhcp.classes[0].options", "option 66"),
        ('      - {name: a, match: {vendor_class: {prefix: x}}, options: {54: 10.0.0.1}}\n',
         "services.dhcp.classes[0].options", "set by the server itself"),
        ('      - {name: a, match: {vendor_class: {prefix: x}}}\n      - {name: a, match: {vendor_class: {prefix: y}}}\n',
         "services.dhcp.classes", "repeated: a"),
        ('      - {name: "a b", match: {vendor_class: {prefix: x}}}\n', "services.dhcp.classes[0].name", "pattern"),
    ],
)
def test_scenario_class_errors_name_the_line(classes, where, message):
    found = [p for p in problems(classes) if f": {where}: " in p]
    assert found, problems(classes)
    assert message in found[0]
    # located: the class's own line (6), or the classes key (5) for a clash between classes
    assert found[0].split(":")[:2] == ["s.yaml", "5" if where == "services.dhcp.classes" else "6"]


@pytest.mark.parametrize("dns, options, given", [
    ("  dns: {address: 127.0.0.9, port: 5354}\n", "", bytes([127, 0, 0, 9])),  # the lab's DNS, as dnsmasq offers itself
    ("  dns: {address: 127.0.0.9, port: 5354}\n", "    options: {6: [10.0.0.53, 10.0.0.54]}\n",
     bytes([10, 0, 0, 53, 10, 0, 0, 54])),  # the scenario's own option 6 wins
    ("  dns: {address: 0.0.0.0, port: 5354}\n", "", None),  # listening everywhere: no one address to give
    ("", "", None),  # no DNS in the lab: no option 6
])
def test_option_6_is_the_labs_dns_unless_the_scenario_sets_it(dns, options, given):
    from labsim.services.lab import lab_name_server

    services = parse_scenario_text(f"""\
name: dns6
services:
  dhcp:
    port: 6767
{options}{dns}fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""", "s.yaml").services
    server = DhcpServer(dhcp_config(services.dhcp, lab_name_server(services)))
    reply = server.handle(discover(bytes([0, 1, 2, 3, 4, 5]), b"yealink"), 0)[0].message
    assert reply.options.get(6) == given
