"""Every vendor profile against real servers: a vendor x server matrix.

A small fleet of each vendor (yealink, avaya, polycom, cisco, grandstream, snom) boots through
``python -m labsim run`` (its relay on 127.0.0.2) against three sets of real servers,
with nothing of labsim's own services running:

- ``kea+tftpd+nginx``: Kea for DHCP; option 66 points at tftpd-hpa; the files the first
  file names are on nginx, by absolute ``http://`` URL (each vendor's own way to point
  elsewhere: a Yealink boot file's ``include:config``, Avaya's ``PROTOCOL HTTP`` +
  ``SERVER_IP``, Polycom's ``CONFIG_FILES`` and upload folders, Cisco's
  ``Profile_Rule_B``, Grandstream's firmware server ``P192``, Snom's ``<setting-files>``). Polycom's uploads are PUT to nginx (its dav module).
- ``kea+vsftpd``: Kea; option 66 is ``ftp://ftp:<password>@127.0.0.1:PORT/``; every
  file on vsftpd.
- ``dnsmasq``: dnsmasq alone, DHCP to the relay and its own TFTP on port 69; option 66
  is the bare address ``127.0.0.1`` (which every vendor reads as TFTP).

Each case checks: every phone ready; the vendor's one reboot; for every phone, exactly
the files it applied with the MD5 of the bytes the real server holds; leases from the
real server's pool; and the servers' own view (both protocols used per phone, vsftpd's
log of logins and downloads, dnsmasq's leases and TFTP log). The configurations and the
quirks found are in docs/interop.md.

Ports 67 and 69 are fixed: ``privileged_ports()`` keeps two test processes on one
machine from holding them at once. Each server runs for one test and is always stopped.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from labsim.wire import avaya_cfg, grandstream_cfg
from tests.interop.realservers import dnsmasq, kea, nginx, privileged_ports, tftpd_hpa, vsftpd
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
RELAY = "127.0.0.2"
COUNT = 6  # phones per case, two models per vendor
# vsftpd's anonymous login also answers to the user name "ftp": the URL's credentials
# travel as USER/PASS and the password shows in vsftpd's log (local users would need
# PAM and a system account).
FTP_USER, FTP_PASSWORD = "ftp", "labsim-matrix"


def md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def bare(mac: str) -> str:
    return mac.replace(":", "").lower()


def macs(first: str, count: int = COUNT) -> list[str]:
    start = int(bare(first), 16)
    return [":".join(f"{start + i:012x}"[j:j + 2] for j in range(0, 12, 2)) for i in range(count)]


# --- the three sets of servers ---------------------------------------------------------------


@dataclass
class Layout:
    """Where the files go and how phones are told. ``root`` is what option 66 points at;
    in the split layout ``http_root``/``http_url`` hold the files the first ones name."""

    name: str
    scheme: str  # option 66's: tftp or ftp
    option66: str
    root: Path
    server_url: str  # what a phone remembers as its provisioning server (no credentials)
    subnet: str  # "10.61." : every lease must be in it
    http_root: Path | None = None
    http_url: str | None = None
    tftp_port: int = 69
    http_port: int = 0
    ftp_port: int = 0

    @property
    def split(self) -> bool:
        return self.http_root is not None

    def second(self, name: str) -> str:
        """How a first file names a second one: by URL on nginx, else by name (same server)."""
        return f"{self.http_url}{name}" if self.split else name

    def place(self, name: str, body: bytes, *, second: bool = False) -> bytes:
        folder = self.http_root if second and self.split else self.root
        (folder / name).write_bytes(body)
        return body


def split_layout(tmp: Path) -> Layout:
    tftp_port, http_port = free_udp_port(), free_tcp_port()
    layout = Layout("kea+tftpd+nginx", "tftp", f"tftp://127.0.0.1:{tftp_port}/", tmp / "tftpboot",
                    f"tftp://127.0.0.1:{tftp_port}/", "10.61.", http_root=tmp / "www",
                    http_url=f"http://127.0.0.1:{http_port}/", tftp_port=tftp_port, http_port=http_port)
    layout.http_root.mkdir()
    (layout.http_root / "uploads").mkdir()
    return layout


def ftp_layout(tmp: Path) -> Layout:
    port = free_tcp_port()
    return Layout("kea+vsftpd", "ftp", f"ftp://{FTP_USER}:{FTP_PASSWORD}@127.0.0.1:{port}/", tmp / "ftproot",
                  f"ftp://127.0.0.1:{port}/", "10.62.", ftp_port=port)


def dnsmasq_layout(tmp: Path) -> Layout:
    return Layout("dnsmasq", "tftp", "127.0.0.1", tmp / "tftpboot", "tftp://127.0.0.1/", "10.60.")


LAYOUTS = {"kea+tftpd+nginx": split_layout, "kea+vsftpd": ftp_layout, "dnsmasq": dnsmasq_layout}


@contextlib.contextmanager
def servers(layout: Layout, tmp: Path):
    """Start the layout's real servers (after the files are written); always stop them."""
    option66 = [{"name": "tftp-server-name", "data": layout.option66}]
    if layout.name == "kea+tftpd+nginx":
        with kea(tmp, subnet="10.61.0.0/16", pool="10.61.0.10 - 10.61.3.250", relay=RELAY, options=option66), \
                tftpd_hpa(str(layout.root), layout.tftp_port), \
                nginx(str(layout.http_root), layout.http_port, tmp, put_folder="uploads"):
            yield
    elif layout.name == "kea+vsftpd":
        with kea(tmp, subnet="10.62.0.0/16", pool="10.62.0.10 - 10.62.3.250", relay=RELAY, options=option66), \
                vsftpd(str(layout.root), layout.ftp_port, tmp, log=str(tmp / "vsftpd.log"), ask_password=True):
            yield
    else:
        with dnsmasq(tmp, relay=RELAY, network="10.60.0.0", dhcp_range="10.60.0.10,10.60.3.250,255.255.0.0,1h",
                     options={66: layout.option66}, tftp_root=str(layout.root)):
            yield


# --- what each vendor is given, and what each phone must have applied ------------------------


class Yealink:
    vendor, models, first_mac = "yealink", {"T46S": 4, "T48S": 2}, "00:15:65:bb:00:01"
    behaviour: dict = {}
    COMMON = {"T46S": "y000000000066.cfg", "T48S": "y000000000065.cfg"}  # the spec's model codes

    def write(self, layout: Layout) -> None:
        self.common = {model: layout.place(name, (
            "#!version:1.0.0.1\n"
            "static.network.lldp.enable = 1\n"  # a network setting: one reboot
            f"account.1.sip_server.1.address = 127.0.0.1\n# {model}\n").encode())
            for model, name in self.COMMON.items()}
        self.mac_files = {mac: layout.place(f"{bare(mac)}.cfg", (
            f"#!version:1.0.0.1\naccount.1.user_name = {index}\n").encode(), second=True)
            for index, mac in enumerate(macs(self.first_mac), 1)}
        if layout.split:
            # Firmware 81+ asks for y000000000000.boot first: the Common CFG by name
            # (model sections), the MAC CFG by URL from nginx.
            layout.place("y000000000000.boot", (
                "#!version:1.0.0.1\n[T46S]\ninclude:config \"y000000000066.cfg\"\n"
                "[T48S]\ninclude:config \"y000000000065.cfg\"\n"
                f"[ALL]\ninclude:config \"{layout.second('$MAC.cfg')}\"\n").encode())

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        return {self.COMMON[phone["model"]]: self.common[phone["model"]],
                f"{bare(phone['mac'])}.cfg": self.mac_files[phone["mac"]]}


class Avaya:
    vendor, models, first_mac = "avaya", {"1220": 4, "1140E": 2}, "00:17:65:bb:00:01"
    behaviour: dict = {}
    MODEL_FILES = {"1220": "1220SIP.cfg", "1140E": "1140eSIP.cfg"}
    LOADS = {"1220": "SIP12x004.01.13.00", "1140E": "SIP1140e04.01.13.00"}  # newer than the default 04.00.04.00

    def where(self, layout: Layout, *, second: bool) -> str:
        """A section's PROTOCOL/SERVER_IP lines (every line under the 80-character rule)."""
        if layout.split and second:
            return f"PROTOCOL HTTP\nSERVER_IP 127.0.0.1:{layout.http_port}\n"
        return "PROTOCOL FTP\n" if layout.scheme == "ftp" else ""  # TFTP is the default

    def write(self, layout: Layout) -> None:
        self.device = layout.place("device.cfg", b"SIP_DOMAIN1 lab.example\nSERVER_IP1_1 127.0.0.1\n", second=True)
        self.users = {mac: layout.place(f"SIP{bare(mac).upper()}.cfg", f"SIP_USER_ID1 {index}\n".encode(),
                                        second=True)
                      for index, mac in enumerate(macs(self.first_mac), 1)}
        self.images = {}
        for model, name in self.MODEL_FILES.items():
            load = self.LOADS[model]
            self.images[model] = layout.place(f"{load}.img", avaya_cfg.sign_firmware(f"load {load}\n".encode()))
            layout.place(name, (
                "# labsim interop matrix\n"
                f"[DEVICE_CONFIG]\nDOWNLOAD_MODE AUTO\nVERSION 000001\nFILENAME device.cfg\n"
                f"{self.where(layout, second=True)}"
                f"[USER_CONFIG]\nVERSION 000001\n{self.where(layout, second=True)}"
                f"[FW]\nVERSION {load}\nFILENAME {load}.img\n{self.where(layout, second=False)}").encode())

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        load = self.LOADS[phone["model"]]
        return {"device.cfg": self.device, f"SIP{bare(phone['mac']).upper()}.cfg": self.users[phone["mac"]],
                f"{load}.img": self.images[phone["model"]]}

    def check(self, layout: Layout, report: dict, tmp: Path) -> None:
        for phone in report["phones"]:  # the new load runs (a real flash, then the reboot)
            assert phone["flash"]["firmware"] == self.LOADS[phone["model"]], phone["mac"]


class Polycom:
    vendor, models, first_mac = "polycom", {"VVX400": 4, "VVX410": 2}, "00:04:f2:bb:00:01"
    behaviour: dict = {}

    def write(self, layout: Layout) -> None:
        self.site = layout.place("site.cfg", (
            '<polycomConfig>\n  <device device.set="1" device.sntp.serverName="127.0.0.1" '
            'device.sntp.serverName.set="1"/>\n  <reg reg.1.address="site-default"/>\n</polycomConfig>\n').encode(),
            second=True)  # a device.* parameter: one restart
        self.phone_files = {mac: layout.place(f"phone{bare(mac)}.cfg", (
            f'<polycomConfig><reg reg.1.address="{index}"/></polycomConfig>\n').encode(), second=True)
            for index, mac in enumerate(macs(self.first_mac), 1)}
        folders = ""
        if layout.split:  # uploads: PUT to nginx (else to the boot server, which refuses them)
            folders = f' LOG_FILE_DIRECTORY="{layout.http_url}uploads" OVERRIDES_DIRECTORY="{layout.http_url}uploads"'
        self.master = layout.place("000000000000.cfg", (
            '<?xml version="1.0" standalone="yes"?>\n'
            f'<APPLICATION CONFIG_FILES="{layout.second("phone[PHONE_MAC_ADDRESS].cfg")}, '
            f'{layout.second("site.cfg")}"{folders}/>\n').encode())

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        return {"000000000000.cfg": self.master,
                layout.second(f"phone{bare(phone['mac'])}.cfg"): self.phone_files[phone["mac"]],
                layout.second("site.cfg"): self.site}

    def check(self, layout: Layout, report: dict, tmp: Path) -> None:
        for phone in report["phones"]:
            mac = bare(phone["mac"])
            steps = [event["detail"] for event in phone["events"]]
            if not layout.split:
                # Uploads go to the boot server's folder over TFTP or FTP: dnsmasq (read-only
                # TFTP) and this vsftpd (no uploads) refuse them, the phone notes the
                # server's answer, and it still ends ready.
                refused = f"upload of {mac}-app.log failed: "
                noted = [step for step in steps if step.startswith(refused)]
                assert noted and (f"{layout.scheme.upper()}: " in noted[0]), steps
                continue
            # nginx stored what each phone PUT: its log, and the overrides file it made
            # when the server had none, which the phone read back after its restart.
            uploads = layout.http_root / "uploads"
            assert (uploads / f"{mac}-phone.cfg").read_bytes().startswith(b"<"), mac
            assert b"|" in (uploads / f"{mac}-app.log").read_bytes(), mac
            overrides = f"{layout.http_url}uploads/{mac}-phone.cfg"
            assert f"uploaded {overrides} ({(uploads / f'{mac}-phone.cfg').stat().st_size} bytes)" in steps, mac
            assert any(step.startswith(f"downloaded {overrides} ") for step in steps), mac


class Cisco:
    vendor, models, first_mac = "cisco", {"CP-7841-3PCC": 4, "SPA504G": 2}, "00:0e:08:bb:00:01"
    behaviour = {"random_delay_unit_s": 0.1}  # Resync_Random_Delay 2 -> at most 0.2 s, not 40 s
    PROFILES = {"CP-7841-3PCC": "7841.xml", "SPA504G": "spa504G.cfg"}  # /$PSN.xml (MPP), /spa$PSN.cfg (SPA)

    def write(self, layout: Layout) -> None:
        rule_b = layout.second("$MA.xml") if layout.split else "/$MA.xml"
        self.profiles = {
            "CP-7841-3PCC": layout.place("7841.xml", (
                f"<flat-profile>\n  <Profile_Rule_B>{rule_b}</Profile_Rule_B>\n"
                "  <HostName>lab-phone</HostName>\n</flat-profile>\n").encode()),  # HostName: one reboot
            "SPA504G": layout.place("spa504G.cfg", f'Profile_Rule_B "{rule_b}" ;\nHostName "lab-phone" ;\n'.encode()),
        }
        self.mac_files = {mac: layout.place(f"{bare(mac)}.xml", (
            f"<flat-profile><User_ID_1_>{index}</User_ID_1_></flat-profile>\n").encode(), second=True)
            for index, mac in enumerate(macs(self.first_mac), 1)}

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        return {self.PROFILES[phone["model"]]: self.profiles[phone["model"]],
                f"{bare(phone['mac'])}.xml": self.mac_files[phone["mac"]]}

    def provisioning_url(self, layout: Layout, phone: dict) -> None:
        return None  # none kept in flash: the profile rules name the server


class Grandstream:
    vendor, models, first_mac = "grandstream", {"GXP2170": 4, "GXP1625": 2}, "00:0b:82:bb:00:01"
    behaviour: dict = {}
    # P212 (Config Upgrade Via) 0: a bare host in option 66 (dnsmasq's) means TFTP; the
    # factory value is HTTPS. A lab sets it once, as here.
    flash = {"settings": {"P212": "0"}}
    RUNNING = {"GXP2170": ("gxp2170fw.bin", "1.0.11.3"), "GXP1625": ("gxp1600fw.bin", "1.0.7.13")}

    def write(self, layout: Layout) -> None:
        firmware = ""
        if layout.split:
            # The firmware server (P192) is nginx: each pass checks the image over HTTP.
            # The images are the running versions, so nothing is flashed.
            firmware = f"<P192>{layout.http_url}</P192>"
            for image, version in self.RUNNING.values():
                layout.place(image, grandstream_cfg.render_image(version), second=True)
        self.common = layout.place("cfg.xml", (
            '<?xml version="1.0" encoding="UTF-8"?>\n<gs_provision version="1"><config version="1">'
            f"<P270>site default</P270><P47>127.0.0.1</P47>{firmware}</config></gs_provision>\n").encode())
        self.model_file = layout.place("cfggxp2170.xml", (
            '<gs_provision version="1"><config version="1"><P270>gxp2170 line</P270></config>'
            "</gs_provision>\n").encode())
        self.mac_files = {mac: layout.place(f"cfg{bare(mac)}.xml", (
            f'<gs_provision version="1"><mac>{bare(mac)}</mac><config version="1"><P35>{index}</P35>'
            "</config></gs_provision>\n").encode())
            for index, mac in enumerate(macs(self.first_mac), 1)}

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        files = {f"cfg{bare(phone['mac'])}.xml": self.mac_files[phone["mac"]], "cfg.xml": self.common}
        if phone["model"] == "GXP2170":
            files["cfggxp2170.xml"] = self.model_file
        return files

    def check(self, layout: Layout, report: dict, tmp: Path) -> None:
        for phone in report["phones"]:  # the MAC file wins over the model file over cfg.xml
            assert phone["flash"]["firmware"] == self.RUNNING[phone["model"]][1], phone["mac"]


class Snom:
    vendor, models, first_mac = "snom", {"D785": 4, "D345": 2}, "00:04:13:bb:00:01"
    behaviour: dict = {}

    def write(self, layout: Layout) -> None:
        # A folder URL (or a bare host) in option 66: the phone asks for snom<model>.htm,
        # which chains the phone's own {mac}.xml (on nginx in the split layout).
        chained = layout.second("{mac}.xml")
        self.model_files = {model: layout.place(f"snom{model}.htm", (
            '<?xml version="1.0" encoding="utf-8"?>\n<settings>\n<phone-settings>\n'
            '  <dns_domain perm="RW">lab.example</dns_domain>\n'  # a network setting: one restart
            f'  <user_realname idx="1" perm="">{model}</user_realname>\n</phone-settings>\n'
            f'<setting-files><file url="{chained}"/></setting-files>\n</settings>\n').encode())
            for model in self.models}
        self.mac_files = {mac: layout.place(f"{bare(mac).upper()}.xml", (
            f'<settings><phone-settings><user_name idx="1" perm="RW">{index}</user_name>'
            "</phone-settings></settings>\n").encode(), second=True)
            for index, mac in enumerate(macs(self.first_mac), 1)}

    def applied(self, layout: Layout, phone: dict) -> dict[str, bytes]:
        return {f"snom{phone['model']}.htm": self.model_files[phone["model"]],
                f"{bare(phone['mac']).upper()}.xml": self.mac_files[phone["mac"]]}

    def provisioning_url(self, layout: Layout, phone: dict) -> str:
        return f"{layout.server_url}snom{phone['model']}.htm"  # the settings file's URL, not a folder


VENDORS = {case.vendor: case for case in (Yealink, Avaya, Polycom, Cisco, Grandstream, Snom)}


# --- running the fleet ---------------------------------------------------------------------


def scenario(case, layout: Layout) -> str:
    fleet = {"vendor": case.vendor, "models": case.models, "first_mac": case.first_mac,
             "boot": {"pattern": "storm", "random_delay_s": 0.3}, "boot_time_s": 0.2, "behaviour": case.behaviour}
    if getattr(case, "flash", None):
        fleet["flash"] = case.flash
    return json.dumps({  # JSON is YAML
        "name": f"matrix-{case.vendor}-{layout.name}",
        "time_limit_s": 30,
        "network": {"dhcp_server": "127.0.0.1", "dhcp_port": 67, "relay_address": RELAY},
        "fleets": [fleet],
        "expect": ["phones.ready == 100%", "phone.reboots == 1"],
    }, indent=1)


def run_fleet(tmp: Path, text: str):
    path = tmp / "scenario.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp / "r")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (tmp / "r" / "report.json").exists(), proc.stdout + proc.stderr
    report = json.loads((tmp / "r" / "report.json").read_text())
    events = [json.loads(line) for line in (tmp / "r" / "events.jsonl").read_text().splitlines()]
    return proc, report, events


def leases(report: dict) -> dict[str, set[str]]:
    found = collections.defaultdict(set)
    for phone in report["phones"]:
        for event in phone["events"]:
            if event["detail"].startswith("lease "):
                found[phone["mac"]].add(event["detail"].split()[1])
    return found


# --- what each server saw ------------------------------------------------------------------


def check_split(layout: Layout, case, report: dict, events: list[dict], tmp: Path) -> None:
    """Every phone fetched over both TFTP (tftpd-hpa) and HTTP (nginx), successfully."""
    schemes = collections.defaultdict(set)
    for event in events:
        if event["kind"] == "fetch" and event["status"] == "ok":
            schemes[event["mac"]].add(urlsplit(event["url"]).scheme)
    for phone in report["phones"]:
        assert schemes[phone["mac"]] == {"tftp", "http"}, (phone["mac"], schemes[phone["mac"]])


VSFTPD_USER = re.compile(r'FTP command: Client "127\.0\.0\.1", "USER ([^"]*)"')
VSFTPD_LOGIN = re.compile(r'OK LOGIN: Client "127\.0\.0\.1", anon password "([^"]*)"')


def check_ftp(layout: Layout, case, report: dict, events: list[dict], tmp: Path) -> None:
    """vsftpd's log: one download per file the phones got, and the URL's password on
    every login (the URL's credentials reached the server)."""
    log = (tmp / "vsftpd.log").read_text(errors="replace")
    ok = [event for event in events if event["kind"] == "fetch" and event["status"] == "ok"]
    assert ok and all(event["url"].startswith("ftp://127.0.0.1:") for event in ok)
    assert log.count("OK DOWNLOAD:") == len(ok), "vsftpd served a different number of files than phones got"
    users = collections.Counter(VSFTPD_USER.findall(log))
    passwords = collections.Counter(VSFTPD_LOGIN.findall(log))
    assert set(users) == {FTP_USER} and set(passwords) == {FTP_PASSWORD}, (users, passwords)
    assert sum(passwords.values()) == sum(users.values()) >= len(ok)


DNSMASQ_LEASE = re.compile(r"^\d+ ([0-9a-f:]{17}) (\S+) ", re.MULTILINE)


def check_dnsmasq(layout: Layout, case, report: dict, events: list[dict], tmp: Path) -> None:
    """dnsmasq's lease file has every phone at the address it used; its TFTP log has one
    "sent" per file the phones got; its NAKs are the ones the phones saw."""
    held = dict(DNSMASQ_LEASE.findall((tmp / "dnsmasq.leases").read_text()))
    got = leases(report)
    for phone in report["phones"]:
        assert held.get(phone["mac"]) in got[phone["mac"]], (phone["mac"], held.get(phone["mac"]), got[phone["mac"]])
    log = (tmp / "dnsmasq.log").read_text(errors="replace")
    ok = [event for event in events if event["kind"] == "fetch" and event["status"] == "ok"]
    assert ok and all(event["url"].startswith("tftp://127.0.0.1/") for event in ok)
    assert len(re.findall(r"dnsmasq-tftp\[\d+\]: sent ", log)) == len(ok)
    dhcp = collections.Counter(event["type"] for event in events if event["kind"] == "dhcp" and event["dir"] == "in")
    requests = sum(1 for event in events if event["kind"] == "dhcp" and event["type"] == "REQUEST")
    assert log.count("DHCPNAK(") == dhcp["NAK"]
    # The NAK rate, for docs/interop.md (pytest -s shows it).
    print(f"\ndnsmasq {case.vendor}: {requests} REQUESTs, {dhcp['NAK']} NAKs, {dhcp['ACK']} ACKs")


SERVER_CHECKS = {"kea+tftpd+nginx": check_split, "kea+vsftpd": check_ftp, "dnsmasq": check_dnsmasq}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
@pytest.mark.parametrize("vendor", list(VENDORS))
def test_vendor_fleet_provisions_from_real_servers(vendor, layout_name, tmp_path):
    layout = LAYOUTS[layout_name](tmp_path)
    layout.root.mkdir()
    case = VENDORS[vendor]()
    case.write(layout)
    with privileged_ports(), servers(layout, tmp_path):
        proc, report, events = run_fleet(tmp_path, scenario(case, layout))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    phones = report["phones"]
    assert len(phones) == COUNT and report["summary"]["by_state"]["ready"] == COUNT
    assert {phone["model"] for phone in phones} == set(case.models)
    got = leases(report)
    for phone in phones:
        assert phone["state"] == "ready" and phone["reboots"] == 1, (phone["mac"], phone["state"], phone["reboots"])
        expected = {name: md5(body) for name, body in case.applied(layout, phone).items()}
        assert phone["files"] == expected, phone["mac"]
        remembered = case.provisioning_url(layout, phone) if hasattr(case, "provisioning_url") else layout.server_url
        if remembered is not None:
            assert phone["flash"]["provisioning_url"] == remembered, phone["mac"]
        assert got[phone["mac"]] and all(address.startswith(layout.subnet) for address in got[phone["mac"]])
    if hasattr(case, "check"):
        case.check(layout, report, tmp_path)
    SERVER_CHECKS[layout_name](layout, case, report, events, tmp_path)


# --- why the dnsmasq configuration has the lines it has ------------------------------------

DNSMASQ_RANGE = {"relay": RELAY, "network": "10.60.0.0", "dhcp_range": "10.60.0.10,10.60.3.250,255.255.0.0,1h",
                 "options": {66: "127.0.0.1"}}


def small_fleet(time_limit_s: float) -> str:
    return json.dumps({
        "name": "dnsmasq-quirk", "time_limit_s": time_limit_s,
        "network": {"dhcp_server": "127.0.0.1", "dhcp_port": 67, "relay_address": RELAY},
        "fleets": [{"vendor": "yealink", "model": "T46S", "count": 2, "first_mac": "00:15:65:bc:00:01",
                    "boot_time_s": 0.1}],
    })


@pytest.mark.timeout(60)
def test_dnsmasq_without_shared_network_ignores_the_relay(tmp_path):
    """A relayed request is placed by its giaddr; 127.0.0.2 is in no dhcp-range, so
    without shared-network dnsmasq answers nothing and the phones stay in DHCP."""
    with privileged_ports(), dnsmasq(tmp_path, omit=("shared-network",), **DNSMASQ_RANGE):
        proc, report, events = run_fleet(tmp_path, small_fleet(2))
    assert report["summary"]["by_state"]["dhcp"] == 2, report["summary"]["by_state"]
    assert not any(event["kind"] == "dhcp" and event["dir"] == "in" for event in events)
    log = (tmp_path / "dnsmasq.log").read_text(errors="replace")
    assert f"no address range available for DHCP request via {RELAY}" in log


@pytest.mark.timeout(60)
def test_dnsmasq_without_bind_interfaces_keeps_the_relay_off_port_67(tmp_path):
    """Without bind-interfaces dnsmasq holds 0.0.0.0:67 alone: the fleet's relay socket
    (127.0.0.2:67, where a server answers a relay) cannot bind and labsim stops."""
    with privileged_ports(), dnsmasq(tmp_path, omit=("bind-interfaces",), **DNSMASQ_RANGE):
        (tmp_path / "scenario.yaml").write_text(small_fleet(2))
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "scenario.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
    assert proc.returncode != 0
    assert "Address already in use" in proc.stdout + proc.stderr
