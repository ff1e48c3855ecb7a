"""The Yealink PnP discovery step on a fake clock: the phone SUBSCRIBEs, the in-memory
PnP responder NOTIFYs, and a URL from PnP wins over every DHCP option."""

from labsim.phones import yealink
from labsim.phones.events import SipReceived
from labsim.phones.flash import Flash
from labsim.phones.phone import PNP_TIMER
from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.transport.driver import PhoneDriver
from labsim.wire import sip_pnp, yealink_cfg
from tests.phonelab import PhoneLab

MAC = "00:15:65:13:ae:0b"
BARE = "00156513ae0b"
RESPONDER = ("127.0.0.1", 5070)


def cfg(**settings) -> bytes:
    return yealink_cfg.render({key.replace("__", "."): str(value) for key, value in settings.items()})


FILES = {  # the PnP folder and the DHCP folder hold different settings: which one was used shows
    "pnp/y000000000066.cfg": cfg(source="pnp"),
    "dhcp/y000000000066.cfg": cfg(source="dhcp"),
}


def pnp_lab(*, url="http://127.0.0.1:8080/pnp/", options=None, flash=None, files=FILES, per_vendor=None,
            boot_time_s=1.0):
    """A PhoneLab whose in-memory network has a PnP responder (None: no PnP server)."""
    options = {66: b"http://127.0.0.1:8080/dhcp/"} if options is None else options
    lab = PhoneLab(yealink, model="T46S", mac=MAC, options=options, files=files, flash=flash, boot_time_s=boot_time_s)
    if url is not None or per_vendor is not None:
        lab.responder = PnpResponder(PnpResponderConfig(url=url, per_vendor=per_vendor or {}, local=RESPONDER))
        lab.network.pnp_responder = lab.responder
        lab.driver = PhoneDriver(lab.phone, lab.clock, lab.network)  # re-attached: now PnP is reachable
    return lab


def subscribes(lab):
    return [(message, to) for message, to in lab.network.sip_sent if message.method == "SUBSCRIBE"]


def test_a_url_from_pnp_wins_over_dhcp_option_66():
    lab = pnp_lab()
    phone = lab.boot()
    assert phone.state == "ready"
    assert phone.flash.settings["source"] == "pnp"
    assert all("/pnp/" in url for url in lab.urls())
    assert "server http://127.0.0.1:8080/pnp/ from PnP" in lab.steps()
    assert "PnP: http://127.0.0.1:8080/pnp/ from 127.0.0.1:5070" in lab.steps()
    assert phone.pnp_url == "http://127.0.0.1:8080/pnp/"


def test_pnp_alone_provisions_a_phone_whose_dhcp_offers_no_option_66():
    lab = pnp_lab(options={})
    phone = lab.boot()
    assert phone.state == "ready" and phone.flash.settings["source"] == "pnp"


def test_the_subscribe_says_who_the_phone_is_and_goes_to_the_multicast_group():
    lab = pnp_lab()
    lab.boot()
    message, to = subscribes(lab)[0]
    assert to is None  # the PnP group; the network decides what that means
    request = sip_pnp.profile_request(sip_pnp.parse(message.encode()))
    assert request == sip_pnp.ProfileRequest(BARE, "Yealink", "T46S", lab.phone.flash.firmware, "device")
    assert message.uri == f"sip:{BARE}@224.0.1.75"
    assert message.header("via").startswith(f"SIP/2.0/UDP {lab.phone.lease.address}:5060;branch=z9hG4bK")
    assert message.header("accept") == "application/url"
    assert message.header("user-agent") == yealink.user_agent(lab.phone)


def test_the_phone_acknowledges_the_notify_to_where_it_came_from():
    lab = pnp_lab()
    lab.boot()
    oks = [(m, to) for m, to in lab.network.sip_sent if not m.is_request]
    assert len(oks) == 1
    ok, to = oks[0]
    assert to == RESPONDER and ok.status == 200 and ok.cseq[1] == "NOTIFY"
    assert lab.responder.stats["notify_acked"] == 1
    assert len(subscribes(lab)) == 1  # the 200 OK came at once: no retransmission


def test_pnp_enable_0_sends_no_subscribe_and_uses_dhcp():
    flash = Flash(firmware="66.85.0.5", settings={"static.auto_provision.pnp_enable": "0"})
    lab = pnp_lab(flash=flash)
    phone = lab.boot()
    assert subscribes(lab) == []
    assert phone.flash.settings["source"] == "dhcp"


def test_without_a_pnp_server_the_phone_neither_subscribes_nor_waits():
    lab = pnp_lab(url=None)
    phone = lab.boot()
    assert lab.network.sip_sent == []
    assert phone.flash.settings["source"] == "dhcp"
    assert not any(stage.stage == "pnp" for stage in phone.stages)
    dhcp_done = next(s.ended for s in phone.stages if s.stage == "dhcp")
    first_fetch = next(s.started for s in phone.stages if s.stage != "dhcp")
    assert first_fetch == dhcp_done  # straight on to the files


def test_a_silent_responder_means_retransmissions_then_dhcp_after_the_wait():
    lab = pnp_lab(url=None, per_vendor={"avaya": "http://127.0.0.1/"})  # says nothing to a Yealink
    lab.driver.power_on()
    lab.advance(30)  # jumps from one scheduled call to the next: exact times
    phone = lab.phone
    assert phone.state == "ready" and phone.flash.settings["source"] == "dhcp"
    sent = subscribes(lab)
    assert len(sent) == 3  # at 0, T1 = 0.5 s, then 2*T1 later (1.5 s); the wait ends at 2 s
    assert len({m.call_id for m, _ in sent}) == 1  # retransmissions of one request
    pnp = next(s for s in phone.stages if s.stage == "pnp")
    assert pnp.status == "timeout" and abs((pnp.ended - pnp.started) - yealink.DEFAULT_BEHAVIOUR.pnp_wait_s) < 1e-6
    first_fetch = next(s.started for s in phone.stages if s.stage not in ("dhcp", "pnp"))
    assert first_fetch == pnp.ended
    assert any(step.startswith("PnP: no NOTIFY within 2") for step in lab.steps())


def test_a_refused_subscribe_ends_pnp_at_once():
    lab = pnp_lab(url=None)
    lab.network.pnp_responder = None  # answer by hand below
    lab.phone.pnp_reachable = True
    lab.driver.power_on()
    lab.advance(1.5)  # booted, leased, SUBSCRIBE sent
    (subscribe, _), = subscribes(lab)
    lab.driver.sip_received(sip_pnp.build_response(subscribe, 403, "Forbidden"), RESPONDER)
    lab.run()
    assert lab.phone.state == "ready" and lab.phone.flash.settings["source"] == "dhcp"
    assert "PnP: SUBSCRIBE refused (403 Forbidden)" in lab.steps()
    pnp = next(s for s in lab.phone.stages if s.stage == "pnp")
    assert (pnp.status, pnp.ended) == ("denied", 1.5)  # at the 403, not when the 2 s wait ends


def test_stray_and_late_sip_is_ignored():
    lab = pnp_lab(url=None)
    lab.network.pnp_responder = None
    lab.phone.pnp_reachable = True
    lab.driver.power_on()
    lab.advance(1.5)
    (subscribe, _), = subscribes(lab)
    other = sip_pnp.build_subscribe(mac="00:15:65:00:00:99", vendor="Yealink", model="T46S", version="1",
                                    local=("10.0.0.9", 5060), call_id="someone-else", tag="x", branch="z9hG4bKx")
    notify_for_other = sip_pnp.build_notify(other, "http://127.0.0.1/evil/", local=RESPONDER, to_tag="a",
                                            branch="z9hG4bKa")
    trying = sip_pnp.build_response(subscribe, 100, "Trying")
    assert lab.phone.handle(SipReceived(trying, RESPONDER), 1.5) == []  # provisional: nothing to do
    assert lab.phone.handle(SipReceived(notify_for_other, RESPONDER), 1.5) == []  # another dialog
    lab.run()  # times out, falls back to DHCP
    late = sip_pnp.build_notify(subscribe, "http://127.0.0.1/late/", local=RESPONDER, to_tag="b", branch="z9hG4bKb")
    assert lab.phone.handle(SipReceived(late, RESPONDER), lab.clock.seconds()) == []
    assert lab.phone.flash.settings["source"] == "dhcp" and lab.phone.pnp_url is None


def test_a_notify_without_a_url_is_acknowledged_and_pnp_gives_up():
    lab = pnp_lab(url=None)
    lab.network.pnp_responder = None
    lab.phone.pnp_reachable = True
    lab.driver.power_on()
    lab.advance(1.5)
    (subscribe, _), = subscribes(lab)
    bad = sip_pnp.build_notify(subscribe, "x", local=RESPONDER, to_tag="a", branch="z9hG4bKa")
    bad.body = b""
    lab.driver.sip_received(bad, RESPONDER)
    replies = [m for m, to in lab.network.sip_sent if not m.is_request]
    assert [r.status for r in replies] == [200]
    assert lab.phone.state == "provisioning" and lab.phone.flash.settings.get("source") is None
    lab.run()
    assert lab.phone.flash.settings["source"] == "dhcp"


def test_pnp_is_asked_at_every_boot_and_its_url_serves_the_resyncs_in_between():
    files = {"pnp/y000000000066.cfg": cfg(static__network__vlan__internet_port_enable=0,  # needs a reboot
                                           static__auto_provision__repeat__enable=1,
                                           static__auto_provision__repeat__minutes=1),
             "dhcp/y000000000066.cfg": cfg(source="dhcp")}
    lab = pnp_lab(files=files)
    phone = lab.boot()
    assert phone.reboots == 1 and phone.state == "ready"
    assert len(subscribes(lab)) == 2  # the first boot and the reboot
    before = len(lab.urls())
    lab.advance(61)  # the repeat timer: a scheduled pass, no boot, so no new SUBSCRIBE
    assert len(subscribes(lab)) == 2
    assert len(lab.urls()) > before and all("/pnp/" in url for url in lab.urls())


def test_the_pnp_wait_is_a_behaviour_setting():
    assert yealink.DEFAULT_BEHAVIOUR.pnp_wait_s == 2.0
    assert PNP_TIMER == "pnp"
