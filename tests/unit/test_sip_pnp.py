"""The PnP SIP codec: the messages a Yealink phone and a PnP responder exchange."""

import pytest
from hypothesis import given, settings, strategies as st

from labsim.wire import sip_pnp
from labsim.wire.sip_pnp import SipParseError

# A SUBSCRIBE as a Yealink phone writes it, byte for byte (header order, compact spacing).
YEALINK_SUBSCRIBE = (
    b"SUBSCRIBE sip:001565aa0001@224.0.1.75 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.1.0.20:5060;branch=z9hG4bK1234;rport\r\n"
    b"From: <sip:001565aa0001@224.0.1.75>;tag=1857438270\r\n"
    b"To: <sip:001565aa0001@224.0.1.75>\r\n"
    b"Call-ID: 1350163735@10.1.0.20\r\n"
    b"CSeq: 1 SUBSCRIBE\r\n"
    b"Contact: <sip:10.1.0.20:5060>\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.85.0.5 00:15:65:aa:00:01\r\n"
    b"Expires: 0\r\n"
    b'Event: ua-profile;profile-type="device";vendor="Yealink";model="T46S";version="66.85.0.5"\r\n'
    b"Accept: application/url\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def subscribe(**overrides):
    args = dict(mac="00:15:65:aa:00:01", vendor="Yealink", model="T46S", version="66.85.0.5",
                local=("127.0.0.2", 40000), call_id="abc@127.0.0.2", tag="t1", branch="z9hG4bKb1")
    args.update(overrides)
    return sip_pnp.build_subscribe(**args)


def test_a_real_yealink_subscribe_parses_into_its_device():
    message = sip_pnp.parse(YEALINK_SUBSCRIBE)
    assert message.method == "SUBSCRIBE" and message.uri == "sip:001565aa0001@224.0.1.75"
    assert message.cseq == (1, "SUBSCRIBE") and message.call_id == "1350163735@10.1.0.20"
    request = sip_pnp.profile_request(message)
    assert request == sip_pnp.ProfileRequest("001565aa0001", "Yealink", "T46S", "66.85.0.5", "device")


def test_built_subscribe_has_every_header_pnp_needs_and_round_trips():
    data = subscribe(user_agent="Yealink SIP-T46S 66.85.0.5 00:15:65:aa:00:01").encode()
    text = data.decode()
    assert text.startswith("SUBSCRIBE sip:001565aa0001@224.0.1.75 SIP/2.0\r\n")
    for line in ("From: <sip:001565aa0001@224.0.1.75>;tag=t1", "To: <sip:001565aa0001@224.0.1.75>",
                 "Call-ID: abc@127.0.0.2", "CSeq: 1 SUBSCRIBE", "Contact: <sip:127.0.0.2:40000>",
                 "Via: SIP/2.0/UDP 127.0.0.2:40000;branch=z9hG4bKb1;rport", "Expires: 0",
                 'Event: ua-profile;profile-type="device";vendor="Yealink";model="T46S";version="66.85.0.5"',
                 "Accept: application/url", "Content-Length: 0"):
        assert line + "\r\n" in text
    assert text.endswith("\r\n\r\n")
    again = sip_pnp.parse(data)
    assert sip_pnp.profile_request(again).model == "T46S"
    assert again.encode() == data


def test_ok_response_matches_the_request_and_adds_a_to_tag():
    request = sip_pnp.parse(YEALINK_SUBSCRIBE)
    ok = sip_pnp.parse(sip_pnp.build_response(request, 200, "OK", to_tag="srv1").encode())
    assert (ok.status, ok.reason, ok.is_request) == (200, "OK", False)
    assert ok.header("via") == request.header("via")
    assert ok.header("from") == request.header("from")
    assert sip_pnp.tag_of(ok, "to") == "srv1"
    assert ok.call_id == request.call_id and ok.cseq == (1, "SUBSCRIBE")


def test_notify_carries_the_url_in_the_subscriptions_dialog():
    request = sip_pnp.parse(YEALINK_SUBSCRIBE)
    url = "http://127.0.0.1:8080/yealink/"
    notify = sip_pnp.parse(sip_pnp.build_notify(request, url, local=("127.0.0.1", 5070), to_tag="srv1",
                                                branch="z9hG4bKn1").encode())
    assert notify.method == "NOTIFY" and notify.uri == "sip:10.1.0.20:5060"  # the Contact
    assert notify.call_id == request.call_id and notify.cseq == (1, "NOTIFY")
    assert sip_pnp.tag_of(notify, "from") == "srv1"
    assert sip_pnp.tag_of(notify, "to") == "1857438270"
    assert notify.header("event") == request.header("event")
    assert notify.header("content-type") == "application/url"
    assert notify.header("subscription-state").startswith("terminated")
    assert sip_pnp.notify_url(notify) == url
    assert sip_pnp.via_params(notify.header("via"))["branch"] == "z9hG4bKn1"


def test_compact_headers_folding_and_bare_lf_are_understood():
    data = (b"\r\nNOTIFY sip:127.0.0.2:40000 SIP/2.0\n"
            b"v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\n"
            b"f: <sip:001565aa0001@224.0.1.75>;tag=a\n"
            b"t: sip:001565aa0001@224.0.1.75;tag=b\n"
            b"i: call-1\n"
            b"CSeq: 7\n   NOTIFY\n"
            b"o: ua-profile\n"
            b"c: application/url\n"
            b"l: 22\n\n"
            b"tftp://127.0.0.1:6969/trailing junk")
    message = sip_pnp.parse(data)
    assert message.cseq == (7, "NOTIFY") and message.call_id == "call-1"
    assert sip_pnp.tag_of(message, "to") == "b"  # addr-spec form: ;tag belongs to the header
    assert sip_pnp.notify_url(message) == "tftp://127.0.0.1:6969/"  # Content-Length cuts the body


def test_event_parameters_may_be_quoted_or_not_and_contain_semicolons():
    name, params = sip_pnp.parse_event('UA-Profile ; vendor=Yealink;model="T4;6S" ;version="1.2"')
    assert name == "ua-profile"
    assert params == {"vendor": "Yealink", "model": "T4;6S", "version": "1.2"}


@pytest.mark.parametrize("uri, expected", [
    ("sip:10.1.0.20:5060", ("10.1.0.20", 5060)),
    ("sip:001565aa0001@224.0.1.75", ("224.0.1.75", 5060)),
    ("sip:u@[::1]:5070;transport=udp", ("::1", 5070)),
    ("sips:host.example", ("host.example", 5060)),
])
def test_uri_host_and_port(uri, expected):
    assert sip_pnp.uri_host_port(uri) == expected


def test_other_events_and_methods_are_not_profile_requests():
    register = YEALINK_SUBSCRIBE.replace(b"SUBSCRIBE", b"REGISTER")
    assert sip_pnp.profile_request(sip_pnp.parse(register)) is None
    other = YEALINK_SUBSCRIBE.replace(b"Event: ua-profile", b"Event: check-sync")
    assert sip_pnp.profile_request(sip_pnp.parse(other)) is None


MALFORMED = [
    b"",
    b"hello world\r\n\r\n",
    b"SUBSCRIBE sip:x@y SIP/2.0\r\nVia: v\r\n",  # no blank line
    YEALINK_SUBSCRIBE.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
    YEALINK_SUBSCRIBE.replace(b"Call-ID: 1350163735@10.1.0.20\r\n", b""),  # a mandatory header missing
    YEALINK_SUBSCRIBE.replace(b"CSeq: 1 SUBSCRIBE", b"CSeq: one SUBSCRIBE"),
    YEALINK_SUBSCRIBE.replace(b"CSeq: 1 SUBSCRIBE", b"CSeq: 1 NOTIFY"),  # does not match the method
    YEALINK_SUBSCRIBE.replace(b"Content-Length: 0", b"Content-Length: 99"),  # truncated body
    YEALINK_SUBSCRIBE.replace(b"Content-Length: 0", b"Content-Length: -1"),
    YEALINK_SUBSCRIBE.replace(b"Max-Forwards: 70", b"Max Forwards 70"),  # not a header line
    YEALINK_SUBSCRIBE.replace(b"Via", b"\xff\xfeVia"),  # not UTF-8
    b"SIP/2.0 2000 OK\r\nVia: a\r\nFrom: b\r\nTo: c\r\nCall-ID: d\r\nCSeq: 1 X\r\n\r\n",
    b"x" * 70000,
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_messages_raise_the_one_parse_error(data):
    with pytest.raises(SipParseError):
        sip_pnp.parse(data)


def test_a_ua_profile_subscribe_without_a_mac_is_a_parse_error():
    data = YEALINK_SUBSCRIBE.replace(b"<sip:001565aa0001@", b"<sip:alice@")
    with pytest.raises(SipParseError, match="MAC"):
        sip_pnp.profile_request(sip_pnp.parse(data))


@pytest.mark.parametrize("body, content_type", [(b"", "application/url"), (b"two urls", "application/url"),
                                                (b"http://x/", "text/plain")])
def test_notify_without_one_url_is_a_parse_error(body, content_type):
    message = sip_pnp.SipMessage(method="NOTIFY", uri="sip:a@b", headers=[("Content-Type", content_type)], body=body)
    with pytest.raises(SipParseError):
        sip_pnp.notify_url(message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_either_parse_or_raise_sip_parse_error(data):
    try:
        message = sip_pnp.parse(data)
    except SipParseError:
        return
    sip_pnp.parse(message.encode())  # what parsed also re-encodes to something parseable


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(YEALINK_SUBSCRIBE) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_subscribes_either_parse_or_raise_sip_parse_error(position, junk):
    data = YEALINK_SUBSCRIBE[:position] + junk + YEALINK_SUBSCRIBE[position + len(junk):]
    try:
        sip_pnp.profile_request(sip_pnp.parse(data))
    except SipParseError:
        pass
