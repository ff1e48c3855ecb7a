"""A Yealink phone's whole boot cycle on a fake clock, with no sockets.

These name the common-cycle rules of spec/phones.md that the core implements.
"""

import hashlib
import random

from twisted.internet.task import Clock

from labsim.phones import yealink
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork
from labsim.wire import dhcp

MAC = "00:15:65:13:ae:0b"
COMMON = b"#!version:1.0.0.1\nstatic.network.lldp.enable = 1\naccount.1.sip_server.1.address = 127.0.0.1\n"
MAC_FILE = b"#!version:1.0.0.1\naccount.1.user_name = 1001\naccount.1.label = %NULL%\n"


def make_lab(options=None, files=None, model="T46S", mac=MAC):
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options=options if options is not None else {
        66: b"http://127.0.0.1:8080/"}))
    network = InMemoryNetwork(clock, dhcp_server=server, files=dict(files if files is not None else {
        "y000000000066.cfg": COMMON, "00156513ae0b.cfg": MAC_FILE}))
    phone = Phone(mac, model, yealink, rng=random.Random(1), boot_time_s=1.0)
    driver = PhoneDriver(phone, clock, network)
    return clock, network, phone, driver


def cfg_urls(network):
    return [f.url for f in network.fetches if f.url.endswith(".cfg")]


def run_until_settled(clock, phone, limit_s=600.0, step=0.01):
    while not phone.settled and clock.seconds() < limit_s:
        clock.advance(step)


def test_first_boot_applies_reboots_once_then_md5_check_ends_the_second_cycle():
    clock, network, phone, driver = make_lab()
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready"
    assert phone.reboots == 1
    states = [state for _, state, _, kind in phone.events if kind == "state"]
    assert states[:6] == ["booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning"]
    assert states[-1] == "ready"
    assert "MD5" in phone.events[-1][2]
    assert phone.flash.file_md5 == {
        "y000000000066.cfg": hashlib.md5(COMMON).hexdigest(),
        "00156513ae0b.cfg": hashlib.md5(MAC_FILE).hexdigest(),
    }
    assert phone.flash.settings["account.1.user_name"] == "1001"
    assert phone.flash.settings["account.1.label"] == ""  # %NULL%
    # Two cycles, each asking for the boot files (firmware 85 >= 81), which do not exist,
    # then the Common CFG, then the MAC CFG, in that order.
    assert [f.url for f in network.fetches] == [
        "http://127.0.0.1:8080/00156513ae0b.boot", "http://127.0.0.1:8080/y000000000000.boot",
        "http://127.0.0.1:8080/y000000000066.cfg", "http://127.0.0.1:8080/00156513ae0b.cfg"] * 2


def test_change_without_a_reboot_key_applies_without_reboot():
    files = {"y000000000066.cfg": b"#!version:1.0.0.1\nlang.gui = English\n"}
    clock, network, phone, driver = make_lab(files=files)
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready" and phone.reboots == 0
    assert phone.flash.settings == {"lang.gui": "English"}


def test_dhcp_identity_on_the_wire():
    clock, network, phone, driver = make_lab()
    driver.power_on()
    clock.advance(1.0)
    discover = network.dhcp_sent[0]
    assert discover.message_type == dhcp.DISCOVER
    assert discover.options[60] == b"yealink"
    assert discover.options[61] == b"\x01" + bytes.fromhex("00156513ae0b")
    assert 66 in discover.options[55] and 43 in discover.options[55]


def test_http_user_agent_is_the_real_phones():
    clock, network, phone, driver = make_lab()
    driver.power_on()
    run_until_settled(clock, phone)
    assert network.fetches[0].user_agent == "Yealink SIP-T46S 66.85.0.5 00:15:65:13:ae:0b"


def test_missing_mac_file_is_asked_for_three_times_then_skipped():
    files = {"y000000000066.cfg": COMMON}
    clock, network, phone, driver = make_lab(files=files)
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready"
    mac_requests = [f for f in network.fetches if f.url.endswith("00156513ae0b.cfg")]
    assert len(mac_requests) == 3 * 2  # three per cycle, two cycles
    assert any("skipped 00156513ae0b.cfg" in detail for _, _, detail, _ in phone.events)


def test_no_file_at_all_fails_with_a_reason():
    clock, network, phone, driver = make_lab(files={})
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "failed"
    assert "no configuration file" in phone.failure


def test_no_option_66_or_43_means_no_server():
    clock, network, phone, driver = make_lab(options={})
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "failed"
    assert phone.failure.startswith("no provisioning server")
    assert network.fetches == []


def test_file_without_version_header_is_rejected_and_not_applied():
    files = {"y000000000066.cfg": b"static.network.lldp.enable = 1\n", "00156513ae0b.cfg": MAC_FILE}
    clock, network, phone, driver = make_lab(files=files)
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready" and phone.reboots == 0
    assert "static.network.lldp.enable" not in phone.flash.settings
    assert "y000000000066.cfg" not in phone.flash.file_md5
    assert any("rejected y000000000066.cfg" in d for _, _, d, _ in phone.events)


def test_option_66_ip_alone_means_tftp():
    clock, network, phone, driver = make_lab(options={66: b"127.0.0.1"})
    driver.power_on()
    run_until_settled(clock, phone)
    assert cfg_urls(network)[0] == "tftp://127.0.0.1/y000000000066.cfg"


def test_option_43_plain_url_is_used_when_66_is_absent():
    clock, network, phone, driver = make_lab(options={43: b"http://127.0.0.1:8081/prov/"})
    driver.power_on()
    run_until_settled(clock, phone)
    assert cfg_urls(network)[0] == "http://127.0.0.1:8081/prov/y000000000066.cfg"


def test_option_43_sub_option_tlv_carrying_a_url():
    payload = dhcp.encode_tlvs([(1, b"tftp://127.0.0.1:6969/")])
    clock, network, phone, driver = make_lab(options={43: payload})
    driver.power_on()
    run_until_settled(clock, phone)
    assert cfg_urls(network)[0] == "tftp://127.0.0.1:6969/y000000000066.cfg"


def test_option_66_wins_over_option_43():
    clock, network, phone, driver = make_lab(options={43: b"http://127.0.0.1:9/", 66: b"http://127.0.0.1:8080/"})
    driver.power_on()
    run_until_settled(clock, phone)
    assert network.fetches[0].url.startswith("http://127.0.0.1:8080/")


def test_flash_url_is_the_last_source():
    clock, network, phone, driver = make_lab(options={})
    phone.flash.settings[yealink.SERVER_URL_KEY] = "http://127.0.0.1:8080/"
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready"
    assert cfg_urls(network)[0] == "http://127.0.0.1:8080/y000000000066.cfg"


def test_custom_dhcp_option_from_list_user_options_beats_66():
    clock, network, phone, driver = make_lab(options={160: b"http://127.0.0.1:7000/", 66: b"http://127.0.0.1:8080/"})
    phone.flash.settings[yealink.USER_OPTIONS_KEY] = "160,161"
    driver.power_on()
    run_until_settled(clock, phone)
    assert network.fetches[0].url.startswith("http://127.0.0.1:7000/")


def test_pn_and_mac_are_substituted_in_the_url():
    clock, network, phone, driver = make_lab(options={66: b"http://127.0.0.1:8080/$PN/$MAC/"},
                                              files={"T46S/00156513ae0b/y000000000066.cfg": COMMON})
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready"


def test_flash_survives_the_reboot_within_a_run():
    clock, network, phone, driver = make_lab()
    driver.power_on()
    run_until_settled(clock, phone)
    flash_before = dict(phone.flash.file_md5)
    assert phone.reboots == 1 and flash_before  # the second cycle compared against this


def test_old_firmware_generation_reboots_on_any_change():
    files = {"y000000000066.cfg": b"#!version:1.0.0.1\nlang.gui = English\n"}
    clock, network, phone, driver = make_lab(files=files)
    old = yealink.YealinkBehaviour(reboot_on_any_change=True)
    phone.profile = _with_behaviour(old)
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready" and phone.reboots == 1


def _with_behaviour(behaviour):
    import types

    profile = types.SimpleNamespace(**{k: getattr(yealink, k) for k in (
        "dhcp_identity", "user_agent", "default_firmware", "check_sync_action")})
    profile.provision = lambda phone: yealink.provision(phone, behaviour)
    return profile


def test_dhcp_retransmits_with_backoff_when_nobody_answers():
    clock = Clock()
    network = InMemoryNetwork(clock, dhcp_server=None)
    phone = Phone(MAC, "T46S", yealink, rng=random.Random(3), boot_time_s=0)
    driver = PhoneDriver(phone, clock, network)
    driver.power_on()
    clock.advance(0)
    times = []
    for _ in range(600):
        clock.advance(0.5)
        if len(network.dhcp_sent) > len(times):
            times.append(clock.seconds())
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert phone.state == "dhcp"
    assert 2.5 <= gaps[0] <= 5.5  # 4 s +- 1
    assert 6.5 <= gaps[1] <= 9.5 and 14.5 <= gaps[2] <= 17.5
    assert max(gaps) <= 65.5  # capped at 64 s



def test_every_download_carries_the_dns_servers_of_the_phones_lease():
    """A host name in a URL is looked up with the DNS servers option 6 gave: the phone's
    requests carry them (none without the option), for the network to ask those."""
    for option6, carried in ((bytes([127, 0, 0, 1, 10, 0, 0, 53]), ("127.0.0.1", "10.0.0.53")), (None, ())):
        options = {66: b"http://127.0.0.1:8080/"}
        if option6 is not None:
            options[6] = option6
        clock, network, phone, driver = make_lab(options=options)
        driver.power_on()
        run_until_settled(clock, phone)
        assert phone.state == "ready" and network.fetches
        assert {request.name_servers for request in network.fetches} == {carried}


def test_every_download_carries_the_phones_own_dns_client_which_a_boot_makes_anew():
    """The lookup of a download's host name reads and fills the phone's own DNS answers
    (RAM) and asks with its vendor's timing: one client per phone, a new, empty one at
    every boot, with what flash says then (a Yealink's query_timeout and retry_times)."""
    clock, network, phone, driver = make_lab(files={
        "y000000000066.cfg": COMMON + b"static.network.dns.query_timeout = 5\nstatic.network.dns.retry_times = 1\n",
        "00156513ae0b.cfg": MAC_FILE})
    driver.power_on()
    run_until_settled(clock, phone)
    assert phone.state == "ready" and phone.reboots == 1
    before, after = network.fetches[:4], network.fetches[4:]  # the reboot between the two passes
    assert len({id(request.dns) for request in before}) == 1 and before[0].dns is not phone.dns
    assert all(request.dns is phone.dns for request in after)
    assert (before[0].dns.timeout_s, before[0].dns.tries) == (3.0, 3)  # Yealink's defaults, at the first boot
    assert (phone.dns.timeout_s, phone.dns.tries) == (5.0, 2)  # what it applied, from the reboot on
    other = make_lab(mac="00:15:65:13:ae:0c")[2]
    assert other.dns is not phone.dns