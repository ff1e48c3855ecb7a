"""Soak: a fleet resyncing every minute for an hour against labsim's own services, 5 % loss.

Half the phones are Yealink on HTTP (``repeat.minutes = 1``), half Polycom
(``prov.polling`` every 60 s) that upload their log after every pass: VVX400s over TFTP
(WRQ), VVX500s over HTTP (PUT). 5 % of the datagrams to and from DHCP and TFTP are lost,
and 5 % of HTTP requests are answered 503.

Two processes, so that the services' memory is measured on its own: ``labsim serve``
runs the services (with the scenario's TFTP and HTTP faults), ``labsim run`` the fleet
against them (its DHCP relay drops 5 %). This script samples both processes' resident
memory (VmRSS) once a minute and, at the end, reads the fleet's report and the services'
counters:

* RSS of the services: flat means no sample after the first 10 minutes more than 10 %
  above the 10-minute sample. The fleet process writes events.jsonl as it goes and keeps
  a phone's first and last events for report.json: its RSS is printed, not judged;
* stuck phones: a phone never ready, or one in a pass at the end that had made no progress
  (no event) for two periods; a phone in a pass that was still moving when the time limit
  came is counted apart (``mid-pass``: a real phone's resync can be cut by a power cut as
  well); and phones that stopped resyncing: the last pass ended (``ready``) more than three
  periods before the end;
* lost uploads: uploads the phones saw accepted minus uploads the servers counted, and
  every uploading phone's log in the scenario's upload folder after the services stop.

A benchmark, not a test (an hour): ``python benchmarks/soak.py [--phones 1000]
[--minutes 60] [--loss 0.05] [--work DIR]``. Prints one line per sample and a verdict;
exit 0 when all three hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
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


def scenarios(phones: int, minutes: float, loss: float) -> tuple[str, str]:
    """(the services' scenario for ``labsim serve``, the fleet's for ``labsim run``)."""
    dhcp, tftp, http = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    yealink = phones // 2
    polycom = phones - yealink
    fleets = f"""\
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
    # A pass that lost a configuration file to the 5 % loss applies the others and drops
    # the lost file's settings: the first hour-long run lost 235 VVX500s' polling that way
    # (an HTTP 503 on site.cfg, one attempt). Three attempts, and the polling settings in
    # the per-phone file too, so one lost file cannot end a phone's resyncs.
    behaviour: {{retry_after_failure_s: 30, attempts_per_file: 3}}
"""
    services = f"""\
name: soak-services
description: the services of a {phones}-phone soak, {loss:.0%} loss on TFTP and HTTP.
seed: 7
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
      text: '<polycomConfig><reg reg.1.address="{{index}}"/>{POLLING}</polycomConfig>'
{fleets}faults:
  - {{name: tftp-loss, service: tftp, direction: both, loss: {loss}}}
  - {{name: http-loss, service: http, loss: {loss}}}
"""
    fleet = f"""\
name: soak
description: {phones} phones resyncing every minute for {minutes:g} minutes with {loss:.0%} loss.
seed: 7
time_limit_s: {minutes * 60 + 120:g}
network: {{dhcp_server: 127.0.0.1, dhcp_port: {dhcp}}}
{fleets}faults:
  - {{name: dhcp-loss, service: dhcp, direction: both, loss: {loss}}}
timeline:  # phones' own resync timers do not keep a run going; this action at the end does
  - at: {minutes * 60 - 1:g}
    do: {{remove_fault: dhcp-loss}}
expect:
  - phones.total == {phones}
"""
    return services, fleet


POLLING = f'<prov prov.polling.enabled="1" prov.polling.mode="rel" prov.polling.period="{RESYNC_S}"/>'
FILES = {
    # Yealink T46S Common CFG: resync every minute.
    "y000000000066.cfg": "#!version:1.0.0.1\nstatic.auto_provision.repeat.enable = 1\n"
                         "static.auto_provision.repeat.minutes = 1\naccount.1.sip_server.1.address = 127.0.0.1\n",
    # Polycom master file and site file: poll every 60 s, upload the log into uploads/.
    "000000000000.cfg": '<?xml version="1.0" standalone="yes"?>\n'
                        '<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg, site.cfg"'
                        ' LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>\n',
    "site.cfg": f"<polycomConfig>{POLLING}</polycomConfig>\n",
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
    parser.add_argument("--work", help="folder for the scenarios and reports (default: a new one under /tmp)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="labsim-soak-")
    os.makedirs(os.path.join(work, "files"), exist_ok=True)
    for name, text in FILES.items():
        with open(os.path.join(work, "files", name), "w", encoding="utf-8") as handle:
            handle.write(text)
    services_text, fleet_text = scenarios(args.phones, args.minutes, args.loss)
    paths = {}
    for name, text in (("services", services_text), ("fleet", fleet_text)):
        paths[name] = os.path.join(work, f"soak-{name}.yaml")
        with open(paths[name], "w", encoding="utf-8") as handle:
            handle.write(text)
    report_dir = os.path.join(work, "report")
    print(f"soak: {args.phones} phones, {args.minutes:g} min, loss {args.loss:.0%}; work folder {work}", flush=True)
    serve_out = os.path.join(work, "serve.out")
    with open(serve_out, "w") as out:
        serve = subprocess.Popen([sys.executable, "-m", "labsim", "serve", paths["services"],
                                  "--report-dir", os.path.join(work, "serve-report")], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C to stop" not in open(serve_out).read():
            if serve.poll() is not None or time.monotonic() > deadline:
                print("labsim serve did not start:", open(serve_out).read()[-2000:])
                return 1
            time.sleep(0.2)
        started = time.monotonic()
        samples: list[tuple[float, float, float]] = []  # minute, services' RSS, fleet's RSS
        with open(os.path.join(work, "run.out"), "w") as out:
            fleet = subprocess.Popen([sys.executable, "-m", "labsim", "run", paths["fleet"], "--report-dir", report_dir],
                                     stdout=out, stderr=subprocess.STDOUT)
            next_sample = started
            while fleet.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    services_rss, fleet_rss = rss_mib(serve.pid), rss_mib(fleet.pid)
                    if services_rss is not None and fleet_rss is not None:
                        samples.append(((now - started) / 60, services_rss, fleet_rss))
                        print(f"  minute {samples[-1][0]:5.1f}  RSS services {services_rss:7.1f} MiB"
                              f"  fleet {fleet_rss:7.1f} MiB", flush=True)
                    next_sample += 60
                time.sleep(1)
        wall = time.monotonic() - started
    finally:
        if serve.poll() is None:
            # SIGTERM, not SIGINT: a shell starts a background job with SIGINT ignored, and
            # this script is often such a job; labsim serve stops alike on either.
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
    return verdict(work, report_dir, open(serve_out).read(), samples, wall)


def server_uploads(serve_output: str) -> dict[str, int]:
    """uploads=N per service from labsim serve's closing counters."""
    found = {}
    for line in serve_output.split("counters:")[-1].splitlines():
        match = re.match(r"\s+(\w+): .*\buploads=(\d+)", line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def verdict(work: str, report_dir: str, serve_output: str, samples, wall: float) -> int:
    report_path = os.path.join(report_dir, "report.json")
    if not os.path.exists(report_path):
        print("no report: see", os.path.join(work, "run.out"))
        return 1
    report = json.load(open(report_path))
    end_t = report["duration_s"]
    last_ready: dict[str, float] = {}
    passes: dict[str, int] = {}
    last_event: dict[str, float] = {}
    uploads_ok = 0
    uploaders: set[str] = set()
    with open(os.path.join(report_dir, "events.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if "mac" in row:
                last_event[row["mac"]] = row["t"]
            if row.get("kind") == "state" and row.get("state") == "ready":
                last_ready[row["mac"]] = row["t"]
                passes[row["mac"]] = passes.get(row["mac"], 0) + 1
            elif row.get("kind") == "upload" and row.get("status") == "ok":
                uploads_ok += 1
                uploaders.add(row["mac"])
    macs = [phone["mac"] for phone in report["phones"]]
    settled = {phone["mac"] for phone in report["phones"] if phone["state"] in ("ready", "failed")}
    in_a_pass = [mac for mac in macs if mac not in settled]
    stuck = [mac for mac in macs if mac not in last_ready
             or (mac in in_a_pass and end_t - last_event.get(mac, 0.0) > 2 * RESYNC_S)]
    mid_pass = [mac for mac in in_a_pass if mac not in stuck]
    stopped = [mac for mac in macs if mac not in stuck and end_t - last_ready[mac] > 3 * RESYNC_S]
    counted = server_uploads(serve_output)
    received = sum(counted.values())
    upload_folder = os.path.join(work, "files", "uploads")
    on_disk = set(os.listdir(upload_folder)) if os.path.isdir(upload_folder) else set()
    missing = [mac for mac in uploaders if f"{mac.replace(':', '')}-app.log" not in on_disk]
    after_10 = [services for minute, services, _ in samples if minute >= 10]
    baseline = after_10[0] if after_10 else None
    growth = (max(after_10) / baseline - 1) if baseline else None
    counts = sorted(passes.values()) or [0]
    print(f"wall time {wall / 60:.1f} min; report duration {end_t / 60:.1f} min; end: {report.get('end_reason')}")
    if samples:
        print(f"RSS of the services: first {samples[0][1]:.1f} MiB, at 10 min {baseline or float('nan'):.1f} MiB, "
              f"max after {max(after_10, default=float('nan')):.1f} MiB, last {samples[-1][1]:.1f} MiB"
              + (f"; growth after 10 min {growth:+.1%}" if growth is not None else ""))
        minutes = samples[-1][0] - samples[0][0]
        print(f"RSS of the fleet (phones, their first and last events): first {samples[0][2]:.1f} MiB, "
              f"last {samples[-1][2]:.1f} MiB" + (f" ({(samples[-1][2] - samples[1][2]) / max(minutes - 1, 1):+.1f}"
                                                   " MiB/min after the first minute)" if len(samples) > 2 else ""))
    print(f"passes per phone (ready entries): min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}")
    print(f"stuck phones (never ready, or in a pass with no event for {2 * RESYNC_S} s at the end): "
          f"{len(stuck)} {stuck[:5]}; mid-pass when the time limit came: {len(mid_pass)}")
    print(f"phones that stopped resyncing (last pass over {3 * RESYNC_S} s before the end): {len(stopped)} "
          f"{stopped[:5]}")
    print(f"uploads: {uploads_ok} accepted per the phones, {received} counted by the servers {counted}; "
          f"{len(uploaders)} phones uploaded, their log missing from {upload_folder}: {len(missing)}")
    print(f"faults on the fleet's side: {report.get('network', {}).get('faults')}")
    print("services' counters:" + serve_output.split("counters:")[-1].rstrip())
    rss_ok = growth is not None and growth <= 0.10
    lost = uploads_ok - received
    ok = rss_ok and not stuck and not stopped and lost <= 0 and not missing
    print(f"verdict: services' RSS {'flat' if rss_ok else 'NOT flat'}, stuck {len(stuck)}, "
          f"stopped resyncing {len(stopped)}, lost uploads "
          f"{max(lost, 0)} + {len(missing)} missing files -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
