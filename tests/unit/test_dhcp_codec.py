"""labsim.wire.dhcp against scapy's BOOTP/DHCP layers as the reference, both directions,
plus malformed input and fuzzing (decode raises DhcpDecodeError and nothing else); and
labsim.wire.dhcp_options (scenario values -> option payloads)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from labsim.wire import dhcp
from labsim.wire.dhcp import DhcpDecodeError, DhcpMessage, decode, encode
from labsim.wire.dhcp_options import encode_option_value, encode_options, option_code

MAC = bytes.fromhex("001565aabbcc")


def scapy_options(pkt) -> dict:
    """scapy's parsed options as {name: value or tuple of values}, without pad/end."""
    out = {}
    for item in pkt[DHCP].options:
        if isinstance(item, tuple):
            out[item[0]] = item[1] if len(item) == 2 else item[1:]
    return out


def test_decodes_a_scapy_built_request():
    pkt = BOOTP(
        op=1, xid=0xDEADBEEF, secs=7, flags=0x8000, chaddr=MAC, giaddr="127.0.0.2", hops=1
    ) / DHCP(
        options=[
            ("message-type", "request"),
            ("requested_addr", "10.1.0.7"),
            ("server_id", "127.0.0.1"),
            ("param_req_list", [1, 3, 6, 66, 43]),
            ("vendor_class_id", b"Nortel-SIP-Phone-A\x00"),
            ("hostname", b"T001765FDBF1D"),
            ("lease_time", 7200),
            ("name_server", "10.1.0.1", "10.1.0.2"),
            ("relay_agent_information", b"\x01\x03abc"),
            "end",
        ]
    )
    msg = decode(bytes(pkt))
    assert (msg.op, msg.xid, msg.secs, msg.flags, msg.hops) == (1, 0xDEADBEEF, 7, 0x8000, 1)
    assert msg.chaddr == MAC and msg.hlen == 6 and msg.htype == 1
    assert msg.giaddr == "127.0.0.2" and msg.ciaddr == msg.yiaddr == msg.siaddr == "0.0.0.0"
    assert msg.message_type == dhcp.REQUEST
    assert list(msg.options) == [53, 50, 54, 55, 60, 12, 51, 6, 82]  # wire order
    assert msg.option_ip(50) == "10.1.0.7"
    assert msg.options[55] == bytes([1, 3, 6, 66, 43])
    assert msg.option_text(60) == "Nortel-SIP-Phone-A"  # NUL terminator stripped
    assert msg.option_text(12) == "T001765FDBF1D"
    assert msg.option_u32(51) == 7200
    assert dhcp.ip_list(msg.options[6]) == ["10.1.0.1", "10.1.0.2"]
    assert msg.options[82] == b"\x01\x03abc"
    assert msg.sname == b"" and msg.file == b""


def test_scapy_parses_what_we_encode():
    msg = DhcpMessage(
        op=dhcp.BOOTREPLY,
        xid=0x01020304,
        chaddr=MAC,
        options={
            53: bytes([dhcp.OFFER]),
            54: dhcp.encode_ip_list(["127.0.0.1"]),
            51: struct.pack("!I", 3600),
            1: dhcp.encode_ip_list(["255.255.0.0"]),
            3: dhcp.encode_ip_list(["10.1.0.1"]),
            6: dhcp.encode_ip_list(["10.1.0.1", "10.1.0.2"]),
            66: b"http://10.1.0.5/prov/",
            150: dhcp.encode_ip_list(["10.1.0.5", "10.1.0.6"]),
        },
        yiaddr="10.1.0.10",
        siaddr="10.1.0.5",
        giaddr="127.0.0.2",
        hops=1,
        flags=0x8000,
        sname=b"tftp.example",
        file=b"boot/y000000000066.cfg",
    )
    wire = encode(msg)
    assert len(wire) == 311  # 240 + 70 bytes of options + end: no padding needed
    pkt = BOOTP(wire)
    assert (pkt.op, pkt.xid, pkt.flags, pkt.hops) == (2, 0x01020304, 0x8000, 1)
    assert (pkt.yiaddr, pkt.siaddr, pkt.giaddr, pkt.ciaddr) == ("10.1.0.10", "10.1.0.5", "127.0.0.2", "0.0.0.0")
    assert pkt.chaddr[:6] == MAC and pkt.chaddr[6:] == bytes(10)
    assert pkt.sname.rstrip(b"\0") == b"tftp.example"
    assert pkt.file.rstrip(b"\0") == b"boot/y000000000066.cfg"
    opts = scapy_options(pkt)
    assert opts["message-type"] == 2
    assert opts["server_id"] == "127.0.0.1"
    assert opts["lease_time"] == 3600
    assert opts["subnet_mask"] == "255.255.0.0"
    assert opts["router"] == "10.1.0.1"
    assert opts["name_server"] == ("10.1.0.1", "10.1.0.2")
    assert opts["tftp_server_name"] == b"http://10.1.0.5/prov/"
    assert opts["tftp_server_address"] == ("10.1.0.5", "10.1.0.6")
    assert pkt[DHCP].options[-1] == "end"
    assert decode(wire) == msg


def test_long_option_is_split_per_rfc3396_and_joined_on_decode():
    value = bytes(range(256)) * 2 + b"tail"  # 516 bytes
    msg = DhcpMessage(op=1, xid=1, chaddr=MAC, options={53: b"\x01", 43: value, 60: b"x"})
    wire = encode(msg)
    body = wire[240:]
    assert body[:3] == b"\x35\x01\x01"
    assert body[3:5] == bytes([43, 255]) and body[5:260] == value[:255]
    assert body[260:262] == bytes([43, 255]) and body[262:517] == value[255:510]
    assert body[517:519] == bytes([43, 6]) and body[519:525] == value[510:]
    assert body[525:528] == b"\x3c\x01x" and body[528] == 255
    assert len(wire) == 240 + 529  # already over 300: no padding
    assert decode(wire).options == {53: b"\x01", 43: value, 60: b"x"}
    # scapy sees three consecutive instances of option 43 (it does not join them)
    parts = [o[1] for o in BOOTP(wire)[DHCP].options if isinstance(o, tuple) and o[0] == "vendor_specific"]
    assert b"".join(parts) == value and len(parts) == 3


def test_option_overload_is_decoded():
    file_opts = bytes([66, 4]) + b"tftp" + b"\xff"
    sname_opts = bytes([67, 5]) + b"a.cfg" + b"\xff"
    pkt = BOOTP(op=2, xid=9, chaddr=MAC, sname=sname_opts, file=file_opts) / DHCP(
        options=[("message-type", "ack"), (52, b"\x03"), "end"]
    )
    msg = decode(bytes(pkt))
    assert msg.options == {53: b"\x05", 66: b"tftp", 67: b"a.cfg"}
    assert msg.sname == b"" and msg.file == b""
    # re-encoding puts everything in the options field
    assert decode(encode(msg)).options == msg.options


def test_names_and_accessors():
    assert dhcp.MESSAGE_TYPE_NAMES[dhcp.DISCOVER] == "DISCOVER"
    assert dhcp.MESSAGE_TYPE_NAMES[dhcp.INFORM] == "INFORM"
    msg = DhcpMessage(op=1, xid=1, chaddr=MAC, options={53: b"\x01\x02", 12: b"caf\xe9", 51: b"\x00\x01"})
    assert msg.message_type is None  # wrong length
    assert msg.option_text(12) == "café"  # not UTF-8: Latin-1
    assert msg.option_u32(51) is None and msg.option_ip(51) is None
    assert msg.option_text(99) is None and msg.option_ip(99) is None and msg.option_u32(99) is None
    assert DhcpMessage(op=1, xid=1, chaddr=MAC, options={}).message_type is None  # plain BOOTP


def test_tlv_and_ip_list_helpers():
    items = [(1, b"http://prov/"), (2, b""), (66, b"x" * 255)]
    raw = dhcp.encode_tlvs(items)
    assert dhcp.decode_tlvs(raw) == items
    assert dhcp.decode_tlvs(b"\x00\x00" + raw + b"\xff\x09junk") == items  # pads skipped, stops at end
    with pytest.raises(DhcpDecodeError):
        dhcp.decode_tlvs(b"\x01\x05abc")
    with pytest.raises(DhcpDecodeError):
        dhcp.decode_tlvs(b"\x01")
    with pytest.raises(ValueError):
        dhcp.encode_tlvs([(1, b"x" * 256)])
    with pytest.raises(ValueError):
        dhcp.encode_tlvs([(255, b"x")])
    assert dhcp.ip_list(dhcp.encode_ip_list(["1.2.3.4", "10.0.0.1"])) == ["1.2.3.4", "10.0.0.1"]
    assert dhcp.ip_list(b"") == []
    with pytest.raises(DhcpDecodeError):
        dhcp.ip_list(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        dhcp.encode_ip_list(["1.2.3.999"])


def _valid_wire() -> bytes:
    return encode(DhcpMessage(op=1, xid=7, chaddr=MAC, options={53: b"\x01", 55: b"\x01\x03\x06"}))


@pytest.mark.parametrize(
    "mangle, why",
    [
        (lambda b: b[:239], "too short"),
        (lambda b: b[:236] + b"\x63\x82\x53\x64" + b[240:], "bad cookie"),
        (lambda b: b[:2] + b"\x11" + b[3:], "hlen 17"),
        (lambda b: b"\x03" + b[1:], "op 3"),
        (lambda b: b[:240] + b"\x35\x05\x01", "option overruns"),
        (lambda b: b[:240] + b"\x35\x01\x01\x37", "no length byte"),
        (lambda b: b[:240] + b"\x34\x01\x07\xff", "bad overload value"),
    ],
)
def test_malformed_inputs_raise_decode_error(mangle, why):
    with pytest.raises(DhcpDecodeError):
        decode(mangle(_valid_wire()))


def test_short_messages_are_padded_to_the_bootp_minimum():
    wire = _valid_wire()
    assert len(wire) == 300
    assert wire[240:248] == b"\x35\x01\x01\x37\x03\x01\x03\x06" and wire[248] == 255
    assert wire[249:] == bytes(300 - 249)


def test_missing_end_option_is_tolerated():
    wire = _valid_wire()
    truncated = wire[:240] + b"\x35\x01\x03"
    assert decode(truncated).message_type == dhcp.REQUEST
    assert decode(wire).options == {53: b"\x01", 55: b"\x01\x03\x06"}


def test_encode_rejects_unencodable_messages():
    with pytest.raises(ValueError):
        encode(DhcpMessage(op=1, xid=1, chaddr=bytes(17), options={}))
    with pytest.raises(ValueError):
        encode(DhcpMessage(op=1, xid=1, chaddr=MAC, options={}, ciaddr="10.0.0.300"))
    with pytest.raises(ValueError):
        encode(DhcpMessage(op=1, xid=2**32, chaddr=MAC, options={}))
    with pytest.raises(ValueError):
        encode(DhcpMessage(op=1, xid=1, chaddr=MAC, options={255: b""}))


# -- property tests -------------------------------------------------------------------

ips = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
names = st.binary(max_size=64).map(lambda b: b.rstrip(b"\0"))
option_codes = st.integers(1, 254).filter(lambda c: c != 52)  # 52 (overload) is structural


@st.composite
def messages(draw, max_option_len=400):
    hlen = draw(st.integers(0, 16))
    return DhcpMessage(
        op=draw(st.sampled_from([1, 2])),
        xid=draw(st.integers(0, 2**32 - 1)),
        chaddr=draw(st.binary(min_size=hlen, max_size=hlen)),
        options=draw(st.dictionaries(option_codes, st.binary(max_size=max_option_len), max_size=8)),
        ciaddr=draw(ips),
        yiaddr=draw(ips),
        siaddr=draw(ips),
        giaddr=draw(ips),
        hops=draw(st.integers(0, 255)),
        secs=draw(st.integers(0, 65535)),
        flags=draw(st.integers(0, 65535)),
        htype=draw(st.integers(0, 255)),
        hlen=hlen,
        sname=draw(names),
        file=draw(names.map(lambda b: b[:128]) | st.binary(max_size=128).map(lambda b: b.rstrip(b"\0"))),
    )


@settings(max_examples=150, deadline=None)
@given(messages())
def test_round_trip_through_our_codec(msg):
    assert decode(encode(msg)) == msg


@settings(max_examples=150, deadline=None)
@given(messages(max_option_len=0))
def test_header_fields_agree_with_scapy_both_ways(msg):
    msg.options = {53: b"\x01"}
    ours = encode(msg)
    pkt = BOOTP(ours)
    got = (pkt.op, pkt.htype, pkt.hlen, pkt.hops, pkt.xid, pkt.secs, pkt.flags,
           pkt.ciaddr, pkt.yiaddr, pkt.siaddr, pkt.giaddr)  # fmt: skip
    want = (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
            msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr)  # fmt: skip
    assert got == want
    assert pkt.chaddr == msg.chaddr.ljust(16, b"\0")
    assert pkt.sname.rstrip(b"\0") == msg.sname and pkt.file.rstrip(b"\0") == msg.file
    # and the other way: scapy builds, we decode
    built = BOOTP(
        op=msg.op, htype=msg.htype, hlen=msg.hlen, hops=msg.hops, xid=msg.xid, secs=msg.secs,
        flags=msg.flags, ciaddr=msg.ciaddr, yiaddr=msg.yiaddr, siaddr=msg.siaddr, giaddr=msg.giaddr,
        chaddr=msg.chaddr.ljust(16, b"\0"), sname=msg.sname, file=msg.file,
    ) / DHCP(options=[("message-type", 1), "end"])  # fmt: skip
    assert decode(bytes(built)) == msg


def _ip(text: str) -> bytes:
    return dhcp.encode_ip_list([text])


# (scapy's option name, scapy's value, option code, the payload bytes RFC 2132 gives)
TYPED_OPTIONS = [
    ("subnet_mask", "255.255.255.0", 1, _ip("255.255.255.0")),
    ("time_zone", 3600, 2, struct.pack("!I", 3600)),
    ("router", "10.0.0.1", 3, _ip("10.0.0.1")),
    ("name_server", ("10.0.0.1", "10.0.0.2"), 6, _ip("10.0.0.1") + _ip("10.0.0.2")),
    ("hostname", b"phone1", 12, b"phone1"),
    ("domain", b"example.com", 15, b"example.com"),
    ("interface-mtu", 1500, 26, struct.pack("!H", 1500)),
    ("broadcast_address", "10.0.255.255", 28, _ip("10.0.255.255")),
    ("NTP_server", "10.0.0.3", 42, _ip("10.0.0.3")),
    ("vendor_specific", b"\x01\x03abc", 43, b"\x01\x03abc"),
    ("requested_addr", "10.0.0.9", 50, _ip("10.0.0.9")),
    ("lease_time", 86400, 51, struct.pack("!I", 86400)),
    ("message-type", 5, 53, b"\x05"),
    ("server_id", "127.0.0.1", 54, _ip("127.0.0.1")),
    ("param_req_list", [1, 3, 6, 66], 55, bytes([1, 3, 6, 66])),
    ("renewal_time", 1800, 58, struct.pack("!I", 1800)),
    ("rebinding_time", 3150, 59, struct.pack("!I", 3150)),
    ("vendor_class_id", b"yealink", 60, b"yealink"),
    ("client_id", b"\x01" + MAC, 61, b"\x01" + MAC),
    ("tftp_server_name", b"http://10.0.0.5/", 66, b"http://10.0.0.5/"),
    ("boot-file-name", b"boot.cfg", 67, b"boot.cfg"),
    ("relay_agent_information", b"\x01\x04port", 82, b"\x01\x04port"),
    ("tftp_server_address", ("10.0.0.5", "10.0.0.6"), 150, _ip("10.0.0.5") + _ip("10.0.0.6")),
]


@settings(max_examples=150, deadline=None)
@given(st.permutations(TYPED_OPTIONS).flatmap(lambda rows: st.integers(0, len(rows)).map(lambda n: rows[:n])))
def test_typed_options_agree_with_scapy_both_ways(rows):
    scapy_items = [(name, *value) if isinstance(value, tuple) else (name, value) for name, value, _, _ in rows]
    expected = {code: payload for _, _, code, payload in rows}
    built = BOOTP(op=1, xid=3, chaddr=MAC) / DHCP(options=scapy_items + ["end"])
    assert decode(bytes(built)).options == expected
    parsed = scapy_options(BOOTP(encode(DhcpMessage(op=1, xid=3, chaddr=MAC, options=expected))))
    assert parsed == {name: value for name, value, _, _ in rows}


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_only_raise_decode_error(data):
    try:
        decode(data)
    except DhcpDecodeError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_packets_only_raise_decode_error(data):
    wire = bytearray(_valid_wire())
    # make the option area interesting: an overload option and option data in file/sname
    wire[240:] = b"\x35\x01\x01\x34\x01\x03\x37\x02\x01\x03\xff"
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    try:
        msg = decode(bytes(wire[:cut]))
    except DhcpDecodeError:
        return
    assert isinstance(msg.options, dict)


# -- labsim.wire.dhcp_options: scenario values -> option payloads ---------------------


@pytest.mark.parametrize(
    "key, code",
    [(66, 66), ("66", 66), ("tftp_server_name", 66), ("TFTP-Server-Name", 66), ("vendor_specific", 43),
     ("tftp_servers", 150), ("config_url", 159), ("provisioning_url", 160), ("vivso", 125), ("dns_servers", 6)],
)  # fmt: skip
def test_option_code_accepts_numbers_and_names(key, code):
    assert option_code(key) == code


@pytest.mark.parametrize("key", ["tftp", 0, 255, "300", True, 1.5, None])
def test_option_code_rejects_unknown_keys(key):
    with pytest.raises(ValueError) as err:
        option_code(key)
    if key == "tftp":
        assert "tftp_server_name" in str(err.value)  # the message lists the allowed names


def test_address_options():
    assert encode_option_value(3, "10.1.0.1") == bytes([10, 1, 0, 1])
    assert encode_option_value(6, ["10.1.0.1", "10.1.0.2"]) == bytes([10, 1, 0, 1, 10, 1, 0, 2])
    assert encode_option_value(150, ["10.1.0.5", "10.1.0.6"]) == bytes([10, 1, 0, 5, 10, 1, 0, 6])
    assert encode_option_value(1, ["255.255.0.0"]) == bytes([255, 255, 0, 0])


def test_text_options():
    assert encode_option_value(66, "http://10.1.0.5/prov/") == b"http://10.1.0.5/prov/"
    assert encode_option_value(160, "https://p.example/$MAC") == b"https://p.example/$MAC"
    assert encode_option_value(15, "example.com") == b"example.com"


def test_option_43_plain_string_and_tlvs():
    assert encode_option_value(43, "http://10.1.0.5/") == b"http://10.1.0.5/"
    tlvs = encode_option_value(
        43, [{"code": 1, "value": "http://10.1.0.5/"}, {"code": 2, "value": {"hex": "0a:0b"}}, {"code": 3, "value": {"ip": "10.0.0.1"}}]
    )  # fmt: skip
    assert dhcp.decode_tlvs(tlvs) == [(1, b"http://10.1.0.5/"), (2, b"\x0a\x0b"), (3, bytes([10, 0, 0, 1]))]


def test_option_125_vivso_rfc3925():
    payload = encode_option_value(
        125,
        [
            {"enterprise": 3561, "sub_options": [{"code": 1, "value": "abc"}]},
            {"enterprise": 13885, "sub_options": [{"code": 2, "value": "VVX400"}, {"code": 3, "value": {"u16": 7}}]},
        ],
    )
    # enterprise (4) | data-len (1) | TLVs, per vendor
    first = (3561).to_bytes(4, "big") + bytes([5]) + b"\x01\x03abc"
    second_tlvs = b"\x02\x06VVX400" + b"\x03\x02\x00\x07"
    assert payload == first + (13885).to_bytes(4, "big") + bytes([len(second_tlvs)]) + second_tlvs
    # a single vendor may be given without the list
    assert encode_option_value(125, {"enterprise": 3561, "sub_options": [{"code": 1, "value": "abc"}]}) == first


def test_typed_forms_for_any_option():
    assert encode_option_value(200, {"text": "hi"}) == b"hi"
    assert encode_option_value(200, {"ip": "1.2.3.4"}) == bytes([1, 2, 3, 4])
    assert encode_option_value(200, {"ips": ["1.2.3.4", "5.6.7.8"]}) == bytes([1, 2, 3, 4, 5, 6, 7, 8])
    assert encode_option_value(200, {"hex": "DEAD beef"}) == bytes.fromhex("deadbeef")
    assert encode_option_value(200, {"u8": 7}) == b"\x07"
    assert encode_option_value(200, {"u16": 258}) == b"\x01\x02"
    assert encode_option_value(200, {"u32": 1}) == b"\x00\x00\x00\x01"
    assert encode_option_value(200, "plain") == b"plain"
    assert encode_option_value(200, 5) == b"\x00\x00\x00\x05"
    assert encode_option_value(66, {"hex": "3130"}) == b"10"  # the typed form overrides the known shape
    assert encode_option_value(2, -3600) == (-3600).to_bytes(4, "big", signed=True)
    assert encode_option_value(26, 1500) == b"\x05\xdc"


@pytest.mark.parametrize(
    "code, value, expected_in_message",
    [
        (1, ["10.0.0.1", "10.0.0.2"], "exactly one"),
        (3, "10.0.0.300", "not an IPv4 address"),
        (6, [], "at least one"),
        (150, 17, "IPv4 address"),
        (66, 5, "expected a string"),
        (66, "", "empty"),
        (43, 5, "sub-options"),
        (43, [{"code": 0, "value": "x"}], "code must be an int 1-254"),
        (43, [{"code": 1}], "sub-option #1"),
        (43, [{"code": 1, "value": "x" * 256}], "at most 255"),
        (125, [{"enterprise": -1, "sub_options": []}], "enterprise"),
        (125, [{"enterprise": 1, "sub_options": [{"code": 1, "value": 3}]}], "enterprise 1"),
        (125, "text", "enterprise"),
        (200, {"u8": 256}, "does not fit"),
        (200, {"hex": "abc"}, "hex digits"),
        (200, {"text": "a", "ip": "1.1.1.1"}, "exactly one key"),
        (200, [1, 2], "no known shape"),
        (200, True, "no known shape"),
        (26, "1500", "expected an integer"),
    ],
)
def test_bad_values_have_clear_errors(code, value, expected_in_message):
    with pytest.raises(ValueError) as err:
        encode_option_value(code, value)
    assert str(err.value).startswith(f"option {code}")
    assert expected_in_message in str(err.value)


def test_encode_options_mapping():
    assert encode_options({"router": "10.1.0.1", "66": "tftp.example", 150: ["10.1.0.5"]}) == {
        3: bytes([10, 1, 0, 1]),
        66: b"tftp.example",
        150: bytes([10, 1, 0, 5]),
    }
    with pytest.raises(ValueError, match="given twice"):
        encode_options({"tftp_server_name": "a", 66: "b"})


@settings(max_examples=150, deadline=None)
@given(messages())
def test_relayed_bytes_are_the_message_with_giaddr_and_one_more_hop(msg):
    """What the fleet's relay sends: the same as encoding a copy with the relay's giaddr and
    hops + 1 (the relay patches the bytes instead)."""
    from dataclasses import replace
    from socket import inet_aton

    msg.hops = min(msg.hops, 254)
    assert dhcp.relayed(encode(msg), inet_aton("127.0.0.3")) == encode(replace(msg, giaddr="127.0.0.3",
                                                                              hops=msg.hops + 1))


def test_relayed_refuses_what_is_not_a_message():
    with pytest.raises(ValueError):
        dhcp.relayed(b"\x01" * 10, b"\x7f\x00\x00\x03")
