"""The vendor kit: every profile fills in the same contract, and the shared steps do what
each vendor used to do by hand."""

import dataclasses
import inspect

import pytest

from labsim.phones import kit
from labsim.phones.events import Credentials, FetchResult
from labsim.phones.phone import Wait
from labsim.phones.vendors import VENDORS, profile_for
from labsim.wire.provisioning_url import parse_server

CONTRACT = ("default_firmware", "dhcp_identity", "user_agent", "check_sync_action", "provision")


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_every_vendor_fills_in_the_profile(vendor):
    profile = VENDORS[vendor]
    assert profile.VENDOR == vendor
    assert profile.MODELS and all(isinstance(model, str) for model in profile.MODELS)
    assert profile.MAC_PREFIXES and all(len(prefix) == 8 for prefix in profile.MAC_PREFIXES)
    assert dataclasses.is_dataclass(profile.DEFAULT_BEHAVIOUR)
    for name in CONTRACT:
        assert callable(getattr(profile, name)), f"{vendor} has no {name}()"
    for name in CONTRACT[1:]:
        parameter = inspect.signature(getattr(profile, name)).parameters.get("behaviour")
        assert parameter is not None, f"{vendor}.{name} takes no behaviour"
        assert parameter.default is profile.DEFAULT_BEHAVIOUR, f"{vendor}.{name}: behaviour defaults elsewhere"
    for model in profile.MODELS:
        assert profile.default_firmware(model)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_bound_profile_passes_the_fleets_behaviour_to_every_step(vendor):
    seen = []
    module = VENDORS[vendor]

    class Spy:
        VENDOR, MODELS = module.VENDOR, module.MODELS

        def default_firmware(self, model):
            return "1.0"

        def dhcp_identity(self, phone, behaviour):
            seen.append(("dhcp_identity", behaviour))

        def user_agent(self, phone, behaviour):
            seen.append(("user_agent", behaviour))

        def check_sync_action(self, phone, reboot_requested, behaviour):
            seen.append(("check_sync_action", behaviour))

        def provision(self, phone, behaviour):
            seen.append(("provision", behaviour))

    behaviour = profile_for(vendor).behaviour
    bound = kit.BoundProfile(Spy(), behaviour)
    bound.dhcp_identity(None), bound.user_agent(None), bound.check_sync_action(None, False), bound.provision(None)
    assert seen == [(name, behaviour) for name in CONTRACT[1:]]
    assert bound.default_firmware("x") == "1.0" and bound.VENDOR == vendor


class _Phone:
    def __init__(self):
        self.notes = []

    def note(self, text):
        self.notes.append(text)


def _drive(procedure, results):
    """Run a kit step, answering each Download with the next result; (requests, return)."""
    requests, answer = [], None
    try:
        while True:
            request = procedure.send(answer)
            requests.append(request)
            answer = results.pop(0) if not isinstance(request, Wait) else None
    except StopIteration as stop:
        return requests, stop.value


def test_download_retries_then_gives_up_with_the_vendors_delay():
    phone = _Phone()
    missing = FetchResult("not_found", detail="404")
    requests, body = _drive(kit.download(phone, "http://h/a.cfg", "a.cfg", None, "cfg", 3, 2.5), [missing] * 3)
    assert body is None
    assert [type(r).__name__ for r in requests] == ["Download", "Wait", "Download", "Wait", "Download"]
    assert [r.seconds for r in requests if isinstance(r, Wait)] == [2.5, 2.5]
    assert phone.notes[-1] == "skipped a.cfg" and "(attempt 3/3)" in phone.notes[-2]


def test_an_optional_file_the_server_lacks_is_one_note_and_no_error():
    phone = _Phone()
    missing = FetchResult("not_found", detail="HTTP 404")
    requests, body = _drive(kit.download(phone, "http://h/a.boot", "a.boot", None, "boot_file", optional=True),
                            [missing])
    assert body is None and [r.optional for r in requests] == [True]
    assert phone.notes == ["a.boot: none on the server, and the phone only looks for it (HTTP 404)"]
    # Answered otherwise (a 503), an optional file is a failed download as any other.
    phone = _Phone()
    requests, body = _drive(kit.download(phone, "http://h/a.boot", "a.boot", None, "boot_file", 2, 1.0, optional=True),
                            [FetchResult("not_found", detail="HTTP 404"), FetchResult("error", detail="HTTP 503")])
    assert body is None and len(requests) == 3
    assert phone.notes == ["a.boot: not_found HTTP 404 (attempt 1/2)", "a.boot: error HTTP 503 (attempt 2/2)",
                           "skipped a.boot"]


def test_download_returns_the_body_at_the_first_success():
    phone = _Phone()
    ok = FetchResult("ok", body=b"x=1")
    requests, body = _drive(kit.download(phone, "tftp://h/a", "a", None, "cfg", 3), [FetchResult("timeout"), ok])
    assert body == b"x=1" and len(requests) == 3 and phone.notes[-1] == "downloaded a (3 bytes)"


def test_values_as_the_manuals_write_them():
    assert kit.parse_int(" 42 ", 7) == 42 and kit.parse_int(None, 7) == 7 and kit.parse_int("-1", 7) == 7
    assert kit.parse_int("4x", None) is None
    assert kit.parse_int("²", 7) == 7 and kit.parse_int("1\u00b9", 7) == 7  # digits to str.isdigit, not to int()
    assert kit.clock_s("03:30") == 3 * 3600 + 1800 and kit.clock_s("24:00") is None and kit.clock_s(None) is None
    assert kit.option_text(b"http://p/\x00\x00 ") == "http://p/" and kit.option_text(None) == ""
    assert kit.bare_mac("00:0B:82:12:34:56") == "000b82123456" == kit.bare_mac("00-0b-82-12-34-56")


def test_credentials_from_the_url_win_over_the_vendors_own():
    fallback = Credentials("fallback", "pw")
    assert kit.url_credentials(parse_server("ftp://u:p@127.0.0.1/x/"), fallback) == Credentials("u", "p")
    assert kit.url_credentials(parse_server("ftp://u@127.0.0.1/x/"), fallback) == Credentials("u", "")
    assert kit.url_credentials(parse_server("http://127.0.0.1/x/"), fallback) is fallback


def test_the_end_of_a_pass_says_what_changed_and_why_it_reboots():
    rebooting = kit.pass_outcome(["a", "b"], noun="setting", reboot_for="firmware 2.0", next_check_s=60)
    assert (rebooting.result, rebooting.reboot, rebooting.next_check_s) == ("applied", True, None)
    assert rebooting.reason == "applied 2 changed settings; reboot for firmware 2.0"
    quiet = kit.pass_outcome([], noun="P-value", next_check_s=60)
    assert (quiet.result, quiet.reboot, quiet.reason, quiet.next_check_s) == ("unchanged", False, "no P-value changed", 60)
    restart = kit.pass_outcome(["k"], noun="parameter", reboot_for="k", restart_word="restart")
    assert restart.reason == "applied 1 changed parameters; restart for k"
