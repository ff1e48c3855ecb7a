"""Numbers in protocol fields, files and settings are ASCII digits. ``str.isdigit`` is also
true for ``²`` and ``①``, which ``int`` refuses: before, each check below let such a
character through to an ``int`` that raised a bare ValueError where the parser promised
its own error (a malformed SIP datagram, a DHCP option 66 URL, a phone's setting)."""

import random

import pytest
from twisted.protocols.ftp import CommandFailed
from twisted.python.failure import Failure

from labsim.fleet.shard import BadShard, Shard
from labsim.phones import avaya
from labsim.phones.kit import parse_int
from labsim.phones.vendors import profile_for
from labsim.scale.cli_scale import workers_count
from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.transport.ftp_fetch import _reply
from labsim.wire import sip_pnp, yealink_cfg
from labsim.wire.dhcp_options import option_code
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import BadProvisioningUrl, parse_server
from tests.phonelab import PhoneLab

NOT_ASCII = ["²", "①", "٣", "1²", "６"]  # a superscript, a circled digit, Arabic-Indic and fullwidth digits


def test_is_number_is_ascii_digits_only():
    assert is_number("0") and is_number("0123456789")
    assert not any(is_number(text) for text in NOT_ASCII + ["", " 1", "-1", "+1", "1.0", "1_000"])


@pytest.mark.parametrize("text", NOT_ASCII)
def test_a_port_that_is_not_ascii_digits_is_a_bad_provisioning_url(text):
    with pytest.raises(BadProvisioningUrl, match="bad port"):
        parse_server(f"http://127.0.0.1:{text}/")


SUBSCRIBE = sip_pnp.build_subscribe(mac="00:15:65:aa:00:01", vendor="Yealink", model="T46S", version="66.85.0.5",
                                    local=("127.0.0.1", 5062), call_id="c1", tag="t1", branch="z9hG4bKn1",
                                    cseq=1).encode()


@pytest.mark.parametrize("old, new", [(b"CSeq: 1 ", "CSeq: {} ".encode()),
                                      (b"Content-Length: 0", "Content-Length: {}".encode()),
                                      (b"SUBSCRIBE sip:", b"SIP/2.0 {}00 OK\r\nX: sip:")])
@pytest.mark.parametrize("text", ["²", "①"])
def test_a_sip_number_that_is_not_ascii_digits_is_a_parse_error_and_the_responder_counts_it(old, new, text):
    assert old in SUBSCRIBE
    datagram = SUBSCRIBE.replace(old, new.decode().format(text).encode(), 1)
    with pytest.raises(sip_pnp.SipParseError):
        sip_pnp.parse(datagram)
    responder = PnpResponder(PnpResponderConfig(url="http://127.0.0.1:8080/", local=("127.0.0.1", 5070)))
    assert responder.handle(datagram, ("127.0.0.1", 5062)) == [] and responder.stats["malformed"] == 1
    assert responder.handle(SUBSCRIBE, ("127.0.0.1", 5062))  # and it goes on answering


def test_a_sip_uri_port_that_is_not_ascii_digits_is_a_parse_error():
    with pytest.raises(sip_pnp.SipParseError, match="bad port"):
        sip_pnp.uri_host_port("sip:pnp@127.0.0.1:5²60")


@pytest.mark.parametrize("text", NOT_ASCII)
def test_command_line_and_scenario_numbers_refuse_other_digits_with_their_own_error(text):
    with pytest.raises(BadShard):
        Shard.parse(f"{text}/2")
    with pytest.raises(ValueError, match="--workers"):
        workers_count(text)
    with pytest.raises(ValueError, match="unknown DHCP option name"):
        option_code(text)
    assert parse_int(text, 7) == 7


def test_an_ftp_reply_code_that_is_not_ascii_digits_is_no_code():
    assert _reply(Failure(CommandFailed(["²²⁰ no such code"]))) == (None, "²²⁰ no such code")
    assert _reply(Failure(CommandFailed(["550 not found"]))) == (550, "550 not found")


@pytest.mark.parametrize("settings", [{"AUTO_UPDATE_TIME": "²"}, {"AUTO_UPDATE_TIME": "7200", "AUTO_UPDATE_TIME_RANGE": "²"}])
def test_avaya_daily_check_settings_that_are_not_ascii_digits(settings):
    wait = avaya.next_daily_check_s({"AUTO_UPDATE": "YES", **settings}, 0.0, random.Random(1))
    if settings["AUTO_UPDATE_TIME"] == "²":
        assert wait is None  # no time of day: no daily check
    else:  # the range's default (unverified) applies
        assert 7200 <= wait <= 7200 + avaya.DEFAULT_BEHAVIOUR.auto_update_range_default_h * 3600


def test_a_yealink_weekly_day_that_is_not_an_ascii_digit_is_passed_over_and_the_phone_stays_ready():
    # 0²: Sunday, and a character the phone skips. Before: "internal error in the yealink procedure".
    files = {"y000000000066.cfg": yealink_cfg.render({
        "static.auto_provision.weekly.enable": "1", "static.auto_provision.weekly.dayofweek": "0²",
        "static.auto_provision.weekly.begin_time": "02:00", "static.auto_provision.weekly.end_time": "03:00",
        "local_time.time_zone": "0", "static.auto_provision.dhcp_option.list_user_options": "²,66"})}
    lab = PhoneLab(profile_for("yealink", {}), model="T46S", mac="00:15:65:13:ae:0b",
                   options={66: b"http://127.0.0.1:8080/"}, files=files)
    lab.boot()
    lab.advance(8 * 86400, step=600)
    assert lab.phone.state == "ready" and not [event for event in lab.phone.events if "internal error" in event[2]]
    later = [t for t, state, _, kind in lab.phone.events if kind == "state" and state == "provisioning"][1:]
    assert later and all((t // 86400) % 7 == 0 and 2 * 3600 <= t % 86400 < 3 * 3600 for t in later), later
