"""Faults on the DNS server, the PnP responder and the FTP server, end to end: the real
CLI, loopback sockets on free ports, small fleets, the report on disk."""

import json

import pytest

from tests.e2e.test_ftp_pnp_scenarios import run_labsim as run_ftp_pnp
from tests.e2e.test_ftp_pnp_scenarios import scenario as ftp_pnp_scenario
from tests.e2e.test_ftp_pnp_scenarios import steps
from tests.e2e.test_run_scenarios import ports, run_labsim, scenario_text
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e


# --- DNS ------------------------------------------------------------------------------------


def by_name_scenario(*, count: int, expect, time_limit: float = 60) -> str:
    """Phones whose option 66 names the server by host name, resolved through the lab's DNS."""
    p = ports()
    text = scenario_text(option66=f"http://prov.lab.example:{p['http_port']}/", count=count, expect=expect,
                         time_limit=time_limit, **p)
    return text.replace("provisioning:", f"""\
  dns:
    port: {free_port_udp_and_tcp()}
    records:
      - {{name: prov.lab.example, type: A, value: 127.0.0.1}}
provisioning:""", 1)


def asking_again_after_1s(text: str) -> str:
    """The scenario's phones set to ask the DNS again after 1 s without an answer
    (Yealink's default is 3 s: a lookup of three tries would outlast a 4 s outage)."""
    return text.replace("    boot_time_s: 0.2\n", "    boot_time_s: 0.2\n"
                        "    flash: {settings: {static.network.dns.query_timeout: 1}}\n", 1)


def dns_outage_scenario(count: int) -> str:
    """by_name_scenario with the lab's DNS down for the first 4 s (the timeline lifts it),
    the phones asking again after 1 s."""
    return asking_again_after_1s(by_name_scenario(count=count, expect=("phones.ready == 100%",))) + """\
faults:
  - {name: dns-outage, service: dns, down: true}
timeline:
  - at: 4
    do: {remove_fault: dns-outage}
"""


def test_dns_down_fails_every_lookup_until_the_timeline_removes_the_fault(tmp_path):
    proc, report = run_labsim(tmp_path, dns_outage_scenario(4))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # While down: lookups failed (the phones saw it) and the server got no query at all...
    assert report["network"]["dns_failures"] >= 1
    assert report["network"]["faults"]["dropped"] >= 3  # one lookup: three tries, all lost
    for phone in report["phones"]:
        assert any("dns prov.lab.example: no answer from the lab DNS" in step for step in steps(phone)), steps(phone)
        # ...and nobody got ready before the fault was gone.
        assert phone["ready_at_s"] > 4
    # The load tester's line for the HTTP server: the failed lookups are there as what
    # they were (status dns), and their 3 s of DNS retries are not the server's latency.
    (server, line), = ((s, v) for s, v in report["summary"]["servers"].items() if s.startswith("http://"))
    assert server.startswith("http://prov.lab.example:")
    assert line["by_status"]["dns"] == report["network"]["dns_failures"]
    assert "error" not in line["by_status"]
    assert line["latency_s"]["count"] == line["requests"] - line["by_status"]["dns"] > 0
    # A failed lookup is three tries a second apart (3 s: query_timeout 1, retry_times 2,
    # read from the phones' flash); a download whose lookup got
    # its answer on a later try (the fault removed meanwhile) still includes that wait.
    assert line["latency_s"]["max"] < 2.5, line
    assert report["timeline"][0]["outcome"] == "fault dns-outage removed"
    assert report["services"]["dns"]["queries"] >= 1  # answered once it was back


def test_dns_loss_of_30_percent_is_retried_by_each_phone_and_every_phone_gets_ready(tmp_path):
    # Each phone asks for itself at each boot (6 phones, one reboot each: 12 lookups at
    # least), so the loss falls on every phone's queries, not on one shared lookup. A lost
    # query or reply costs that phone a resend a second later; a lookup whose three tries
    # are all lost fails its download with status dns, and the phone tries again later.
    # (Asking again after 1 s, not Yealink's 3: the same losses, in a third of the time.)
    text = asking_again_after_1s(by_name_scenario(count=6, expect=("phones.ready == 100%",))) + """\
seed: 1
faults:
  - {service: dns, loss: 0.3}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 6
    dropped, served = report["network"]["faults"]["dropped"], report["services"]["dns"]["queries"]
    assert dropped >= 1
    # Every datagram dropped was a query (never served) or a reply (its query served).
    assert served + dropped >= 6 * 2
    events = [json.loads(line) for line in (tmp_path / "report" / "events.jsonl").read_text().splitlines()]
    failed_lookups = [e for e in events if e["kind"] == "fetch" and e["status"] == "dns"]
    assert report["network"]["dns_failures"] == len(failed_lookups)
    assert all("no answer from the lab DNS" in e["detail"] for e in failed_lookups)
    # What the phones' lookups did: one a download (every URL names the host), answered
    # from the phone's own cache or asked on the wire, each try a query.
    lookups = report["network"]["dns_lookups"]
    [line] = [v for s, v in report["summary"]["servers"].items() if s.startswith("http://prov.lab.example")]
    assert lookups["lookups"] == line["requests"] and lookups["failures"] == len(failed_lookups)
    assert lookups["cache_hits"] > 0 and lookups["queries"] >= served
    assert lookups["queries"] >= lookups["lookups"] - lookups["cache_hits"] + len(failed_lookups) * 2


# --- PnP ------------------------------------------------------------------------------------


def test_pnp_down_makes_yealink_phones_fall_back_to_dhcp_option_66(tmp_path):
    http_port, pnp_port = free_tcp_port(), free_udp_port()
    option66 = f"http://127.0.0.1:{http_port}/"
    # The PnP URL leads nowhere (no such folder): a phone that got it would fail.
    services = f"""\
  http: {{port: {http_port}}}
  pnp:
    port: {pnp_port}
    url: "http://127.0.0.1:{http_port}/nowhere/"
"""
    text = ftp_pnp_scenario(services=services, dhcp_options=f'66: "{option66}"', count=4, extra="""\
faults:
  - {service: pnp, down: true}
""")
    proc, report = run_ftp_pnp(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 4
    pnp = report["services"]["pnp"]
    assert pnp["received"] == 0 and pnp["notifies_sent"] == 0
    assert report["network"]["faults"]["dropped"] >= 4  # every SUBSCRIBE (and its retransmissions)
    for phone in report["phones"]:
        assert any(step.startswith("PnP: no NOTIFY") for step in steps(phone)), steps(phone)
        assert phone["flash"]["provisioning_url"] == option66


# --- FTP ------------------------------------------------------------------------------------

BIG_COMMON = "".join(f"# padding line {i:05d} .......................................\n" for i in range(300))
COMMON_SIZE = len("#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n" + BIG_COMMON)  # the file served


def ftp_scenario(extra: str = "", count: int = 4) -> str:
    ftp_port = free_tcp_port()
    services = f"""\
  ftp:
    port: {ftp_port}
    users: {{phone: "s3cret"}}
"""
    text = ftp_pnp_scenario(services=services, dhcp_options=f'66: "ftp://phone:s3cret@127.0.0.1:{ftp_port}/"',
                            count=count, extra=extra)
    # ~19 KB Common CFGs, so that bandwidth shows in the stage times
    padding = "".join(f"      {line}\n" for line in BIG_COMMON.splitlines())
    return text.replace("      static.network.lldp.enable = 1\n", "      static.network.lldp.enable = 1\n" + padding)


def stage(report, name: str) -> float:
    return report["summary"]["stages_s"][name]["p50"]


def test_ftp_slow_and_bandwidth_measurably_slow_the_downloads(tmp_path):
    for name in ("fast", "slow", "thin"):
        (tmp_path / name).mkdir()
    proc, fast = run_ftp_pnp(tmp_path / "fast", ftp_scenario())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, slow = run_ftp_pnp(tmp_path / "slow", ftp_scenario("""\
faults:
  - {service: ftp, slow_s: 0.1}
"""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, thin = run_ftp_pnp(tmp_path / "thin", ftp_scenario("""\
faults:
  - {service: ftp, direction: out, bandwidth_kbps: 400}
"""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for report in (fast, slow, thin):
        assert report["summary"]["by_state"]["ready"] == 4
    # slow_s: USER, PASS, TYPE, PASV, RETR each answered 0.1 s late, for every file.
    assert stage(slow, "mac_cfg") >= stage(fast, "mac_cfg") + 0.5
    assert stage(slow, "common_cfg") >= stage(fast, "common_cfg") + 0.5
    # bandwidth: the ~18 KB Common CFG takes its time on a 400 kbit/s line (measured 0.376 s
    # against 0.001 s), the 60-byte MAC CFG next to none.
    assert stage(thin, "common_cfg") >= stage(fast, "common_cfg") + 0.95 * COMMON_SIZE * 8 / 400_000
    assert stage(thin, "mac_cfg") < 0.1
    assert thin["network"]["faults"]["throttled"] >= 4


def test_ftp_down_fails_the_phones_through_their_ftp_error_path(tmp_path):
    text = ftp_scenario("""\
faults:
  - {service: ftp, down: true}
""", count=2).replace("  - phones.ready == 100%\n  - phone.reboots == 1\n", "  - phones.failed == 100%\n")
    proc, report = run_ftp_pnp(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["failed"] == 2
    ftp = report["services"]["ftp"]
    assert ftp["sessions"] == 0 and ftp["files_sent"] == 0
    assert report["network"]["faults"]["refused"] >= 2 * 2 * 3  # two CFGs, three attempts each, per phone
    for phone in report["phones"]:
        failures = [step for step in steps(phone) if "FTP" in step and "attempt" in step]
        assert failures and all("error FTP:" in step for step in failures), steps(phone)
