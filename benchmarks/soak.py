"""Soak: a fleet resyncing every minute for an hour against labsim's own services, 5 % loss.

Half the phones are Yealink on HTTP (``repeat.minutes = 1``), half Polycom
(``prov.polling`` every 60 s) that upload their log after every pass: VVX400s over TFTP
(WRQ), VVX500s over HTTP (PUT).
5 % of the datagrams to and from DHCP and TFTP are lost, and 5 % of HTTP requests are
answered 503. One ``labsim run`` process holds the services and the phones; this script
samples its resident memory (VmRSS) once a minute and, at the end, reads the report:

* RSS: flat means no sample after the first 10 minutes more than 10 % above the
  10-minute sample;
* stuck phones: a phone whose last pass ended (``ready``) more than three resync periods
  before the end, or that never got ready;
* lost uploads: uploads the phones saw accepted minus uploads the servers counted,
  and every uploading phone's log in the scenario's upload folder after the run.

A benchmark, not a test (an hour): ``python benchmarks/soak.py [--phones 1000]
[--minutes 60] [--loss 0.05] [--work DIR]``. Prints one line per sample and a verdict;
exit 0 when all three hold.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

RESYNC_S = 60


def _free_port(kind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scenario_text(phones: int, minutes: float, loss: float) -> str:
    dhcp, tftp, http = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    yealink = phones // 2
    polycom = phones - yealink
    return f"""\
name: soak
description: {phones} phones resyncing every minute for {minutes:g} minutes with {loss:.0%} loss.
seed: 7
time_limit_s: {minutes * 60 + 120:g}
services:
  dhcp:
    port: {dhcp}
    subnet: 10.30.0.0/16
    pool: {{start: 10.30.0.10, end: 10.30.20.250}}
    lease_time_s: 600
    options: {{66: "http://127.0.0.1:{http}/"}}
    classes:
      - name: polycom
        match: {{vendor_class: {{regex: "VVX_400"}}}}
        options: {{66: "tftp://127.0.0.1:{tftp}/"}}
  tftp: {{port: {tftp}, timeout_s: 0.5, max_retransmits: 10, uploads: true, upload_dir: uploads}}
  http: {{port: {http}, uploads: true, upload_dir: uploads}}
provisioning:
  directory: files
  per_phone:
    - name: "{{mac}}.cfg"
      fleets: [yealink]
      text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"
    - name: "phone{{mac}}.cfg"
      fleets: [polycom]
      text: '<polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>'
fleets:
  - name: yealink
    vendor: yealink
    model: T46S
    count: {yealink}
    first_mac: "00:15:65:70:00:01"
    boot: {{pattern: ramp, per_second: 20}}
    boot_time_s: 1.0
    behaviour: {{retry_delay_s: 2.0}}
  - name: polycom
    vendor: polycom
    models: {{VVX400: {polycom // 2}, VVX500: {polycom - polycom // 2}}}
    first_mac: "00:04:f2:70:00:01"
    boot: {{pattern: ramp, per_second: 20}}
    boot_time_s: 1.0
    behaviour: {{retry_after_failure_s: 30}}
faults:
  - {{name: dhcp-loss, service: dhcp, direction: both, loss: {loss}}}
  - {{name: tftp-loss, service: tftp, direction: both, loss: {loss}}}
  - {{name: http-loss, service: http, loss: {loss}}}
timeline:  # phones' own resync timers do not keep a run going; this action at the end does
  - at: {minutes * 60 - 1:g}
    do: {{remove_fault: dhcp-loss}}
expect:
  - phones.total == {phones}
"""


FILES = {
    # Yealink T46S Common CFG: resync every minute.
    "y000000000066.cfg": "#!version:1.0.0.1\nstatic.auto_provision.repeat.enable = 1\n"
                         "static.auto_provision.repeat.minutes = 1\naccount.1.sip_server.1.address = 127.0.0.1\n",
    # Polycom master file and site file: poll every 60 s, upload the log into uploads/.
    "000000000000.cfg": '<?xml version="1.0" standalone="yes"?>\n'
                        '<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg, site.cfg"'
                        ' LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>\n',
    "site.cfg": '<polycomConfig><prov prov.polling.enabled="1" prov.polling.mode="rel"'
                f' prov.polling.period="{RESYNC_S}"/></polycomConfig>\n',
}


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--work", help="folder for the scenario and report (default: a new one under /tmp)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="labsim-soak-")
    os.makedirs(os.path.join(work, "files"), exist_ok=True)
    for name, text in FILES.items():
        with open(os.path.join(work, "files", name), "w", encoding="utf-8") as handle:
            handle.write(text)
    scenario = os.path.join(work, "soak.yaml")
    with open(scenario, "w", encoding="utf-8") as handle:
        handle.write(scenario_text(args.phones, args.minutes, args.loss))
    report_dir = os.path.join(work, "report")
    print(f"soak: {args.phones} phones, {args.minutes:g} min, loss {args.loss:.0%}; work folder {work}", flush=True)
    started = time.monotonic()
    with open(os.path.join(work, "labsim.out"), "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", scenario, "--report-dir", report_dir],
                                stdout=out, stderr=subprocess.STDOUT)
        samples: list[tuple[float, float]] = []
        next_sample = started
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                rss = rss_mib(proc.pid)
                if rss is not None:
                    samples.append(((now - started) / 60, rss))
                    print(f"  minute {samples[-1][0]:5.1f}  RSS {rss:7.1f} MiB", flush=True)
                next_sample += 60
            time.sleep(1)
    wall = time.monotonic() - started
    return verdict(work, report_dir, samples, wall, args)


def verdict(work: str, report_dir: str, samples, wall: float, args) -> int:
    report_path = os.path.join(report_dir, "report.json")
    if not os.path.exists(report_path):
        print("no report: see", os.path.join(work, "labsim.out"))
        return 1
    report = json.load(open(report_path))
    end_t = report["duration_s"]
    last_ready: dict[str, float] = {}
    passes: dict[str, int] = {}
    uploads_ok = 0
    uploaders: set[str] = set()
    with open(os.path.join(report_dir, "events.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("kind") == "state" and row.get("state") == "ready":
                last_ready[row["mac"]] = row["t"]
                passes[row["mac"]] = passes.get(row["mac"], 0) + 1
            elif row.get("kind") == "upload" and row.get("status") == "ok":
                uploads_ok += 1
                uploaders.add(row["mac"])
    macs = [phone["mac"] for phone in report["phones"]]
    stuck = [mac for mac in macs if end_t - last_ready.get(mac, -1e9) > 3 * RESYNC_S]
    tftp = report.get("services", {}).get("tftp", {})
    http = report.get("services", {}).get("http", {})
    received = tftp.get("uploads", 0) + http.get("uploads", 0)
    upload_folder = os.path.join(work, "files", "uploads")
    on_disk = set(os.listdir(upload_folder)) if os.path.isdir(upload_folder) else set()
    missing = [mac for mac in uploaders if f"{mac.replace(':', '')}-app.log" not in on_disk]
    after_10 = [rss for minute, rss in samples if minute >= 10]
    baseline = after_10[0] if after_10 else None
    growth = (max(after_10) / baseline - 1) if baseline else None
    counts = sorted(passes.values()) or [0]
    print(f"wall time {wall / 60:.1f} min; report duration {end_t / 60:.1f} min; end: {report.get('end_reason')}")
    print(f"RSS: first {samples[0][1]:.1f} MiB, at 10 min {baseline or float('nan'):.1f} MiB, "
          f"max after {max(after_10, default=float('nan')):.1f} MiB, last {samples[-1][1]:.1f} MiB"
          + (f"; growth after 10 min {growth:+.1%}" if growth is not None else ""))
    print(f"passes per phone (ready entries): min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}")
    print(f"stuck phones: {len(stuck)} {stuck[:5]}")
    print(f"uploads: {uploads_ok} accepted per the phones, {received} counted by the servers (TFTP {tftp.get('uploads', 0)}, "
          f"HTTP {http.get('uploads', 0)}); "
          f"{len(uploaders)} phones uploaded, their log missing from {upload_folder}: {len(missing)}")
    print(f"faults: {report.get('network', {}).get('faults')}; tftp server: {tftp}")
    rss_ok = growth is not None and growth <= 0.10
    lost = uploads_ok - received
    ok = rss_ok and not stuck and lost <= 0 and not missing
    print(f"verdict: RSS {'flat' if rss_ok else 'NOT flat'}, stuck {len(stuck)}, lost uploads "
          f"{max(lost, 0)} + {len(missing)} missing files -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
