"""The PnP responder: I/O-free behaviour, then once over a real loopback UDP socket."""

import socket

from hypothesis import given, settings, strategies as st
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.services.pnp_udp import start_pnp_server
from labsim.wire import sip_pnp

PHONE = ("127.0.0.2", 40000)


def subscribe(mac="00:15:65:aa:00:01", vendor="Yealink", model="T46S", call_id="c1", cseq=1, branch="z9hG4bKp1"):
    return sip_pnp.build_subscribe(mac=mac, vendor=vendor, model=model, version="66.85.0.5", local=PHONE,
                                   call_id=call_id, tag="pt", branch=branch, cseq=cseq).encode()


def responder(**config):
    config.setdefault("local", ("127.0.0.1", 5070))
    return PnpResponder(PnpResponderConfig(**config))


def test_subscribe_gets_200_ok_then_a_notify_with_the_url_both_to_the_source():
    pnp = responder(url="http://127.0.0.1:8080/")
    replies = pnp.handle(subscribe(), PHONE)
    assert [target for _, target in replies] == [PHONE, PHONE]
    ok, notify = (sip_pnp.parse(data) for data, _ in replies)
    assert ok.status == 200 and ok.cseq == (1, "SUBSCRIBE") and ok.call_id == "c1"
    assert notify.method == "NOTIFY" and notify.call_id == "c1"
    assert sip_pnp.tag_of(notify, "from") == sip_pnp.tag_of(ok, "to") != ""
    assert sip_pnp.notify_url(notify) == "http://127.0.0.1:8080/"
    assert pnp.stats["subscribes"] == 1 and pnp.stats["notifies_sent"] == 1


def test_the_url_is_chosen_by_model_then_vendor_then_default_with_placeholders():
    pnp = responder(url="tftp://127.0.0.1/", per_vendor={"yealink": "http://127.0.0.1/{vendor}/{mac}/"},
                    per_model={"t48s": "ftp://127.0.0.1/{model}/{MAC}/"})

    def url(**kw):
        return sip_pnp.notify_url(sip_pnp.parse(pnp.handle(subscribe(**kw), PHONE)[1][0]))

    assert url(call_id="a") == "http://127.0.0.1/Yealink/001565aa0001/"
    assert url(call_id="b", model="T48S") == "ftp://127.0.0.1/T48S/001565AA0001/"
    assert url(call_id="c", vendor="Polycom") == "tftp://127.0.0.1/"


def test_a_phone_with_no_url_gets_no_answer_at_all():
    pnp = responder(per_vendor={"avaya": "http://127.0.0.1/"})
    assert pnp.handle(subscribe(), PHONE) == []
    assert pnp.stats["no_url"] == 1


def test_a_retransmitted_subscribe_gets_the_same_answer_until_the_notify_is_acknowledged():
    pnp = responder(url="http://127.0.0.1/")
    first = pnp.handle(subscribe(), PHONE)
    again = pnp.handle(subscribe(), PHONE)
    assert again == first  # same 200 OK, same NOTIFY (same tag and branch)
    notify = sip_pnp.parse(first[1][0])
    ack = sip_pnp.build_response(notify, 200, "OK").encode()
    assert pnp.handle(ack, PHONE) == []
    assert pnp.stats["notify_acked"] == 1
    third = pnp.handle(subscribe(), PHONE)
    assert third == first[:1]  # the 200 OK only: the NOTIFY arrived
    assert pnp.stats["retransmissions"] == 2 and pnp.stats["notifies_sent"] == 2
    fresh = pnp.handle(subscribe(cseq=2, branch="z9hG4bKp2"), PHONE)  # a new request: a new dialog
    assert sip_pnp.tag_of(sip_pnp.parse(fresh[0][0]), "to") != sip_pnp.tag_of(sip_pnp.parse(first[0][0]), "to")


def test_other_sip_traffic_is_ignored_and_malformed_datagrams_are_counted():
    pnp = responder(url="http://127.0.0.1/")
    options = subscribe().replace(b"Event: ua-profile", b"Event: presence")
    assert pnp.handle(options, PHONE) == []
    stray_ok = sip_pnp.build_response(sip_pnp.parse(subscribe()), 200, "OK").encode()
    assert pnp.handle(stray_ok, PHONE) == []
    assert pnp.stats["ignored"] == 2
    for junk in (b"", b"\x00" * 40, b"GET / HTTP/1.1\r\n\r\n", subscribe().replace(b"001565aa0001", b"bob")):
        assert pnp.handle(junk, PHONE) == []
    assert pnp.stats["malformed"] == 4 and pnp.stats["received"] == 6


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 600), st.binary(max_size=8))
def test_the_responder_never_raises(noise, position, junk):
    pnp = responder(url="http://127.0.0.1/")
    pnp.handle(noise, PHONE)
    data = subscribe()
    pnp.handle(data[:position] + junk + data[position + len(junk):], PHONE)


class OverUdp(trial.TestCase):
    @defer.inlineCallbacks
    def test_a_real_socket_answers_a_subscribe(self):
        server = start_pnp_server(reactor, PnpResponderConfig(url="http://127.0.0.1:8080/"), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        assert server.port != 0

        def exchange():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(5)
                sock.sendto(b"garbage", ("127.0.0.1", server.port))
                sock.sendto(subscribe(), ("127.0.0.1", server.port))
                return [sock.recvfrom(65535) for _ in range(2)]

        (ok, ok_from), (notify, _) = yield threads.deferToThread(exchange)
        assert ok_from == ("127.0.0.1", server.port)
        assert sip_pnp.parse(ok).status == 200
        parsed = sip_pnp.parse(notify)
        assert sip_pnp.notify_url(parsed) == "http://127.0.0.1:8080/"
        assert parsed.header("via").startswith(f"SIP/2.0/UDP 127.0.0.1:{server.port};")
        assert server.stats["malformed"] == 1 and server.stats["notifies_sent"] == 1
