"""Real servers in a bridge lab's server namespace (tests/interop/bridge_lab.py), the files
the phones provision from, and labsim's fleet run in the phones namespace.

Kea answers broadcast clients on its interface (raw sockets, no relay); tftpd-hpa and
nginx listen on the server's 198.18.N.1. The phones: Yealink (T46S, T48S) and Cisco
(CP-7841-3PCC), each with a setting that needs one reboot, so every phone boots twice.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.interop.bridge_lab import BridgeLab
from tests.interop.realservers import running
from tests.peers import require_binary

ROOT = Path(__file__).resolve().parents[2]
YEALINK_FIRST, CISCO_FIRST = "00:15:65:cc:00:01", "00:0e:08:cc:00:01"


def macs(first: str, count: int) -> list[str]:
    start = int(first.replace(":", ""), 16)
    return [":".join(f"{start + i:012x}"[j:j + 2] for j in range(0, 12, 2)) for i in range(count)]


def write_files(lab: BridgeLab, tftp_root: Path, www: Path, yealink: int, cisco: int,
                http_host: str | None = None) -> None:
    """Yealink: y000000000000.boot names the model's Common CFG (TFTP) and $MAC.cfg on
    nginx; Cisco: the model profile's Profile_Rule_B points at $MA.xml on nginx.
    ``http_host``: the name (or address) those URLs give the HTTP server."""
    http = f"http://{http_host or lab.server_ip}/"
    tftp_root.mkdir(parents=True, exist_ok=True)
    www.mkdir(parents=True, exist_ok=True)
    (tftp_root / "y000000000000.boot").write_text(
        "#!version:1.0.0.1\n[T46S]\ninclude:config \"y000000000066.cfg\"\n"
        "[T48S]\ninclude:config \"y000000000065.cfg\"\n"
        f"[ALL]\ninclude:config \"{http}$MAC.cfg\"\n")
    for name in ("y000000000066.cfg", "y000000000065.cfg"):
        (tftp_root / name).write_text("#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n"
                                      f"account.1.sip_server.1.address = {lab.server_ip}\n")
    for index, mac in enumerate(macs(YEALINK_FIRST, yealink), 1):
        (www / f"{mac.replace(':', '')}.cfg").write_text(f"#!version:1.0.0.1\naccount.1.user_name = {index}\n")
    (tftp_root / "7841.xml").write_text(f"<flat-profile>\n  <Profile_Rule_B>{http}$MA.xml</Profile_Rule_B>\n"
                                        "  <HostName>lab-phone</HostName>\n</flat-profile>\n")
    for index, mac in enumerate(macs(CISCO_FIRST, cisco), 1):
        (www / f"{mac.replace(':', '')}.xml").write_text(
            f"<flat-profile><User_ID_1_>{index}</User_ID_1_></flat-profile>\n")
    for folder in (tftp_root, www):
        os.chmod(folder, 0o755)
        for path in folder.iterdir():
            os.chmod(path, 0o644)


def scenario(lab: BridgeLab, *, yealink: int, cisco: int, network_extra: str = "", time_limit_s: int = 90) -> str:
    return f"""\
name: realnet
time_limit_s: {time_limit_s}
network: {{interface: {lab.phones_if}, allow: [{lab.subnet}]{network_extra}}}
fleets:
  - {{vendor: yealink, models: {{T46S: {yealink - yealink // 2}, T48S: {yealink // 2}}}, first_mac: "{YEALINK_FIRST}",
     boot: {{pattern: storm, random_delay_s: 1}}}}
  - {{vendor: cisco, models: {{CP-7841-3PCC: {cisco}}}, first_mac: "{CISCO_FIRST}",
     behaviour: {{random_delay_unit_s: 0.1}}, boot: {{pattern: storm, random_delay_s: 1}}}}
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


@contextlib.contextmanager
def kea_on(lab: BridgeLab, tmp: Path, *, option66: str, pool: tuple[int, int] = (100, 250),
           subnet: str | None = None, pool_prefix: str | None = None, relay: str | None = None):
    """kea-dhcp4 on the server's interface, broadcast clients (raw socket), leases in a
    CSV file (``tmp/kea-leases4.csv``). With ``relay``: the subnet (``subnet``, pool in
    ``pool_prefix``) is the one relayed from that giaddr."""
    binary = require_binary("kea-dhcp4")
    prefix = pool_prefix or lab.prefix
    subnet4 = {"id": 1, "subnet": subnet or lab.subnet, "pools": [{"pool": f"{prefix}.{pool[0]} - {prefix}.{pool[1]}"}],
               "option-data": [{"name": "tftp-server-name", "data": option66}]}
    if relay is not None:
        subnet4["relay"] = {"ip-addresses": [relay]}
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": [lab.server_if]},
        "lease-database": {"type": "memfile", "persist": True, "name": str(tmp / "kea-leases4.csv"),
                           "lfc-interval": 0},
        "valid-lifetime": 3600,
        "subnet4": [subnet4],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}],
    }}
    path = tmp / "kea-dhcp4.json"
    path.write_text(json.dumps(config))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp), KEA_LOCKFILE_DIR=str(tmp), KEA_LOG_CHECK_VERBOSE="0")
    with running(lab.in_server(binary, "-c", str(path)), env=env, name="kea-dhcp4",
                 ready=lambda: time.sleep(1.0)) as proc:
        yield proc


def kea_leases(tmp: Path) -> dict[str, dict]:
    """The last row Kea wrote for each address (it appends; a release writes the lease
    again with valid_lifetime 0)."""
    last: dict[str, dict] = {}
    with open(tmp / "kea-leases4.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            last[row["address"]] = row
    return last


@contextlib.contextmanager
def tftpd_on(lab: BridgeLab, root: Path):
    binary = require_binary("in.tftpd")
    with running(lab.in_server(binary, "--foreground", "--listen", "--address", f"{lab.server_ip}:69",
                               "--user", "root", "--secure", str(root)), name="in.tftpd") as proc:
        yield proc


@contextlib.contextmanager
def nginx_on(lab: BridgeLab, root: Path, tmp: Path):
    """nginx on the server's address, port 80, with an access log (``tmp/access.log``)
    of the client address, the path, the status, the connection's serial number and the
    request's number on its connection."""
    binary = require_binary("nginx")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format lab '$remote_addr $request_uri $status $connection $connection_requests';
    access_log {tmp}/access.log lab;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    server {{ listen {lab.server_ip}:80; root {root}; }}
}}
""")

    def ready():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(lab.in_server("bash", "-c", f"exec 3<>/dev/tcp/{lab.server_ip}/80"),
                                   capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("nginx did not listen")

    with running(lab.in_server(binary, "-c", str(conf), "-g", "daemon off;"), name="nginx", ready=ready) as proc:
        yield proc


def run_labsim(lab: BridgeLab, tmp: Path, text: str, *command: str, timeout: int = 150):
    """``labsim run`` (or ``validate``) in the phones namespace; (CompletedProcess, report or None)."""
    path = tmp / "scenario.yaml"
    path.write_text(text)
    report_dir = tmp / "report"
    verb = command[0] if command else "run"
    args = [sys.executable, "-m", "labsim", verb, str(path)] + (["--report-dir", str(report_dir)]
                                                                 if verb == "run" else [])
    done = subprocess.run(lab.in_phones(*args), cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=timeout)
    report = None
    if (report_dir / "report.json").exists():
        report = json.loads((report_dir / "report.json").read_text())
    return done, report


@contextlib.contextmanager
def capture(interface: str, path: Path, capture_filter: str, namespace: list[str] | None = None):
    """tshark writing ``path`` on ``interface`` (in the test's namespace, or through the
    ``namespace`` command prefix) until the block ends."""
    tshark = require_binary("tshark")
    args = (namespace or []) + [tshark, "-i", interface, "-f", capture_filter, "-w", str(path), "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not path.exists() or path.stat().st_size == 0:  # tshark writes the header once capturing
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tshark did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
            time.sleep(0.1)
        yield
    finally:
        time.sleep(0.5)  # the last frames reach the file
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        proc.stderr.close()


def read_capture(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    tshark = require_binary("tshark")
    args = [tshark, "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for field in fields:
        args += ["-e", field]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def dnsmasq_on(lab: BridgeLab, tmp: Path, tftp_root: Path):
    """dnsmasq on the server's interface: DHCP for broadcast clients (option 66 the bare
    server address, which phones read as TFTP) and its TFTP on port 69; DHCP lines in
    ``tmp/dnsmasq.log``, leases in ``tmp/dnsmasq.leases``."""
    binary = require_binary("dnsmasq")
    log = tmp / "dnsmasq.log"
    conf = tmp / "dnsmasq.conf"
    conf.write_text("\n".join([
        "port=0", f"interface={lab.server_if}", "bind-interfaces", "no-resolv", "no-hosts", "user=root",
        "no-ping",  # else it pings each address first: phones do not answer ICMP (3 s per lease)
        "log-dhcp", f"log-facility={log}", f"dhcp-leasefile={tmp / 'dnsmasq.leases'}", f"pid-file={tmp / 'dnsmasq.pid'}",
        f"dhcp-range={lab.prefix}.100,{lab.prefix}.250,255.255.255.0,1h", f'dhcp-option=66,"{lab.server_ip}"',
        "enable-tftp", f"tftp-root={tftp_root}", "",
    ]))

    def ready():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if log.exists() and "TFTP root is" in log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise TimeoutError("dnsmasq did not start")

    with running(lab.in_server(binary, "-C", str(conf), "--keep-in-foreground"), name="dnsmasq", ready=ready) as proc:
        yield proc
