"""Host names the lab cannot look up, noted before a run (labsim/scenario/name_lookup.py):
without a DNS server every download from them is refused; with services.dns and no A
record for them every lookup fails."""

from __future__ import annotations

import pytest

from labsim.scenario.loader import ScenarioError, load_scenario
from labsim.scenario.name_lookup import host_of
from labsim.scenario.sizing import noted

FLEET = """\
fleets:
  - vendor: yealink
    model: T46S
    count: 2
    first_mac: "00:15:65:00:00:01"
    flash:
      settings:
        static.auto_provision.server.url: "https://flash.lab/cfg/"
        account.1.label: "see http://10.0.0.1/"
"""


def notes_of(tmp_path, services: str, network: str = "") -> list[str]:
    path = tmp_path / "lab.yaml"
    path.write_text("name: lab\nservices:\n" + services + network + FLEET)
    loaded = load_scenario(str(path))
    return list(noted(loaded, 2).notes)


OPTIONS = """\
  dhcp:
    options:
      66: "http://prov.lab:8080/"
      160: "polycom.lab"
    classes:
      - name: polycom
        match: {vendor_class: {prefix: Polycom}}
        options: {tftp_server_name: "tftp.lab/boot", 43: "x https://vendor.lab/a.cfg y", 150: 127.0.0.9}
  http: {port: 8080}
  pnp:
    url: "http://127.0.0.1:8080/"
    per_vendor: {snom: "http://pnp.lab:8080/{mac}.xml"}
"""


def test_without_a_dns_server_every_named_host_is_noted_at_its_line(tmp_path):
    notes = notes_of(tmp_path, OPTIONS)
    places = [note.split(": names the host ")[0].split(": ", 1)[1] for note in notes]
    hosts = [note.split("names the host ")[1].split("'")[1] for note in notes]
    assert list(zip(places, hosts)) == [
        ("services.dhcp.options[66]", "prov.lab"),
        ("services.dhcp.options[160]", "polycom.lab"),  # a bare host: a TFTP server
        ("services.dhcp.classes[0].options.tftp_server_name", "tftp.lab"),  # option 66 by its name
        ("services.dhcp.classes[0].options[43]", "vendor.lab"),
        ("services.pnp.per_vendor.snom", "pnp.lab"),
        ("fleets[0].flash.settings.static.auto_provision.server.url", "flash.lab"),
    ]
    assert notes[0].startswith(f"{tmp_path / 'lab.yaml'}:5:7: ")  # the key's place, as every problem's
    assert notes[0].endswith("the lab has no DNS server (services.dns or network.dns_server): the phones cannot "
                             "look it up, and every download from it will be refused")


def test_with_the_labs_dns_only_names_without_an_a_record_are_noted(tmp_path):
    dns = """\
  dns:
    port: 5354
    records:
      - {name: prov.lab, type: A, value: 127.0.0.1}
      - {name: tftp.lab, type: CNAME, value: prov.lab}
      - {name: vendor.lab, type: AAAA, value: "::1"}
      - {name: pnp.lab, type: CNAME, value: elsewhere.example}
      - {name: Flash.Lab., type: A, value: 127.0.0.2}
"""
    notes = notes_of(tmp_path, OPTIONS + dns)
    hosts = [note.split("names the host ")[1].split("'")[1] for note in notes]
    # prov.lab (A), tftp.lab (CNAME to an A) and flash.lab (any case, trailing dot) resolve;
    # an AAAA only, a CNAME out of the zone and no record at all do not.
    assert hosts == ["polycom.lab", "vendor.lab", "pnp.lab"]
    assert all("services.dns has no A record for it" in note and note.endswith("with status dns") for note in notes)


def test_a_real_dns_server_is_not_second_guessed(tmp_path):
    assert notes_of(tmp_path, OPTIONS, "network: {dns_server: 127.0.0.53}\n") == []


def test_addresses_and_localhost_need_no_lookup(tmp_path):
    services = """\
  dhcp:
    options: {66: "http://127.0.0.1:8080/", 160: "localhost", 159: "[::1]:69"}
  http: {port: 8080}
"""
    path = tmp_path / "lab.yaml"
    path.write_text("name: lab\nservices:\n" + services + FLEET.replace("https://flash.lab/cfg/", "tftp://127.0.0.1/"))
    assert list(noted(load_scenario(str(path)), 2).notes) == []


@pytest.mark.parametrize("value, bare, host", [
    ("prov.lab", True, "prov.lab"),
    ("prov.lab", False, None),
    ("ftp://user:pw@Prov.Lab:2121/dir", False, "prov.lab"),
    ("http://10.1.2.3/", False, None),
    ("tftp://[fe80::1]/", False, None),
    ("http://", False, None),
    ("http://[broken/", False, None),
])
def test_the_host_a_value_points_at(value, bare, host):
    assert host_of(value, bare_is_server=bare) == host


def test_an_option_6_without_the_labs_dns_is_the_one_note_for_every_name(tmp_path):
    """The phones ask only the DNS servers option 6 gives: without the lab's DNS among
    them no name resolves, which is said once at option 6 (global or a class's), instead
    of once per name."""
    dns = """\
  dns:
    address: 127.0.0.1
    port: 5354
    records: [{name: prov.lab, type: A, value: 127.0.0.1}]
"""
    wrong = OPTIONS.replace('      160: "polycom.lab"\n', '      160: "polycom.lab"\n      6: [10.0.0.53, 10.0.0.54]\n'
                            ).replace("150: 127.0.0.9}", "150: 127.0.0.9, dns_servers: [127.0.0.1]}")
    notes = notes_of(tmp_path, wrong + dns)
    assert [note.split(": ", 2)[1] for note in notes] == ["services.dhcp.options[6]"]
    assert notes[0].endswith("gives the phones 10.0.0.53, 10.0.0.54 as their DNS servers, not the lab's DNS "
                             "127.0.0.1: they ask those and hear nothing, so no host name resolves (without option "
                             "6, labsim's DHCP gives the lab's DNS)")
    right = wrong.replace("6: [10.0.0.53, 10.0.0.54]", "6: [10.0.0.53, 127.0.0.1]")
    assert "options[6]" not in " ".join(notes_of(tmp_path, right + dns))  # back to the names' own notes


def test_a_host_name_no_dns_query_can_carry_is_a_note_not_a_crash(tmp_path):
    # Found by the fuzzer: option 66 with a character IDNA refuses raised UnicodeError out
    # of the notes, so `labsim validate` and `labsim run` ended in a traceback.
    services = """\
  dhcp:
    options:
      66: "http://pr\\ufffdvisioning.lab:8080/"
      160: "a..b"
  http: {port: 8080}
  dns:
    port: 5354
    records:
      - {name: flash.lab, type: A, value: 127.0.0.1}
"""
    notes = notes_of(tmp_path, services)
    assert [note.split(": ", 2)[1] for note in notes] == ["services.dhcp.options[66]", "services.dhcp.options[160]"]
    assert notes[0].endswith("names the host 'pr\ufffdvisioning.lab', which is no DNS name (Invalid character "
                             "'\ufffd'): no lookup of it can succeed, and every download from it will fail with "
                             "status dns")
    assert "names the host 'a..b', which is no DNS name (label empty or too long)" in notes[1]


def test_a_dns_record_whose_name_or_target_is_no_dns_name_is_refused_with_the_record(tmp_path):
    for record, says in [('{name: "a..b", type: A, value: 127.0.0.1}', "record name 'a..b' is no DNS name (label "
                          "empty or too long)"),
                         ('{name: ok.lab, type: CNAME, value: "x\\ufffd.lab"}', "ok.lab CNAME: bad value "
                          "'x\ufffd.lab': 'x\ufffd.lab' is no DNS name (Invalid character '\ufffd')"),
                         ('{name: _sip._udp.lab, type: SRV, value: "0 0 5060 y..lab"}', "bad value '0 0 5060 "
                          "y..lab': 'y..lab' is no DNS name")]:
        with pytest.raises(ScenarioError) as refused:
            notes_of(tmp_path, f"  dhcp: {{}}\n  dns:\n    records:\n      - {record}\n")
        [problem] = refused.value.problems
        assert problem.field == "services.dns.records[0]" and says in problem.message, problem.message
