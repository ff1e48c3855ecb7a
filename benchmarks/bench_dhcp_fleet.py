"""DHCP load generation: a labsim `until: dhcp` fleet vs ISC perfdhcp, against the same Kea.

A benchmark, not a test. Needs root (Kea answers relays on port 67) and runs in a
private network namespace (``unshare --net``), as benchmarks/bench_dhcp.py does.
Both load generators are relay agents: perfdhcp on 127.0.0.2:67, labsim's fleet on
127.0.0.3:67; Kea (memfile, one subnet listing both relays) on 127.0.0.1.

    sudo python benchmarks/bench_dhcp_fleet.py [--rates 1000,2000,5000] [--duration 4] [--workers 0,2]

For each rate, alternating in one run: perfdhcp ``-r RATE`` for ``--duration`` seconds,
then a labsim fleet of RATE x duration phones powering on in a ramp of RATE per second
with ``boot_time_s: 0`` and ``until: dhcp`` (each phone's DISCOVER leaves at its power-on
moment), once per ``--workers`` value: 0 = one process, N = ``labsim run --workers N``
(shard i relays from 127.0.0.3 + i; Kea lists 127.0.0.3-10). Printed per rate: DORA/s
completed within the load period (perfdhcp's own count; labsim's from each phone's ready
time) and loss for both (labsim's "loss" is its retransmitted DHCP messages over all it
sent: a retransmission means an answer did not come in time), how late labsim's phones
powered on against the schedule (p50/p99/max, from report.json's
network.power_on_lateness_ms), and labsim's CPU per phone (user + system of labsim and
its workers, sampled from /proc, from the start instant to the last lease: start-up and
report left out). Target (issue 12): labsim
>= 1.0x perfdhcp at < 1 % loss, the power-on error p99 a few ms at 5,000/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dhcp import (  # noqa: E402  (the same Kea set-up, perfdhcp runner and namespace)
    POOL_END, POOL_START, PORT, RELAY, REPO, SERVER, SUBNET, enter_private_netns, perfdhcp, stop,
    wait_until_answering,
)
from bench_quickstart import RssSampler  # noqa: E402  (CPU of labsim and its workers, from /proc)

FLEET_RELAY = "127.0.0.3"
# With --workers N the fleet's shard i relays from FLEET_RELAY + i (labsim.fleet.shard.relay_address_for):
# Kea must list every one of them as a relay of the subnet.
MAX_WORKERS = 8


def fleet_relays(count: int = MAX_WORKERS) -> list[str]:
    base = [int(part) for part in FLEET_RELAY.split(".")]
    return [".".join(map(str, base[:3] + [base[3] + index])) for index in range(count)]


def start_kea(workdir: Path) -> subprocess.Popen:
    config = {"Dhcp4": {
        "interfaces-config": {"interfaces": [f"lo/{SERVER}"], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "memfile", "persist": False, "lfc-interval": 0},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": SUBNET, "pools": [{"pool": f"{POOL_START} - {POOL_END}"}],
                     "relay": {"ip-addresses": [RELAY, *fleet_relays()]},
                     "option-data": [{"name": "routers", "data": "10.0.0.1"}]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stderr"}], "severity": "WARN"}],
    }}
    path = workdir / "kea-dhcp4.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "KEA_PIDFILE_DIR": str(workdir), "KEA_LOCKFILE_DIR": str(workdir)}
    return subprocess.Popen([shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4", "-c", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=(workdir / "kea.log").open("w"), text=True)


class CpuSampler(RssSampler):
    INTERVAL_S = 0.05  # a 4 s storm: the window's ends to 50 ms


def fleet_scenario(rate: int, duration: int, first_mac: str) -> str:
    return f"""\
name: dhcp-fleet-{rate}
time_limit_s: {duration + 60}
network: {{dhcp_server: {SERVER}, dhcp_port: {PORT}, relay_address: {FLEET_RELAY}}}
fleets:
  - vendor: yealink
    model: T46S
    count: {rate * duration}
    first_mac: "{first_mac}"
    boot: {{pattern: ramp, per_second: {rate}}}
    boot_time_s: 0
    until: dhcp
"""


def run_fleet(workdir: Path, rate: int, duration: int, first_mac: str, workers: int = 0) -> dict:
    from labsim.fleet.pacer import lateness_percentile
    from labsim.scale.workers import START_MARGIN_S

    name = f"{rate}-w{workers}"
    path = workdir / f"fleet-{name}.yaml"
    path.write_text(fleet_scenario(rate, duration, first_mac))
    report_dir = workdir / f"report-{name}"
    command = [sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir)]
    if workers:
        command += ["--workers", str(workers)]
    # Unbuffered: labsim's first line ("labsim: NAME: N phones ...") is written at the start
    # instant, and its arrival here starts the storm's CPU window.
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with (workdir / f"labsim-{name}.err").open("w") as errors:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        sampler = CpuSampler(proc.pid)
        sampler.start()
        started = None
        try:
            for line in proc.stdout:
                if started is None and line.startswith("labsim: "):
                    started = time.time()
            proc.wait(timeout=duration + 120)
        finally:
            sampler.stop()
    report = json.loads((report_dir / "report.json").read_text())
    phones = report["phones"]
    ready = [phone for phone in phones if phone["state"] == "ready"]
    # As perfdhcp counts: exchanges completed within the load period (-p), per second.
    first = min(phone["powered_on_at_s"] for phone in phones)
    in_period = sum(1 for phone in ready if phone["ready_at_s"] <= first + duration)
    sent = report["network"]["relay"]["sent"]
    # labsim's CPU (user + system, its workers too) from the start instant to the last lease
    # (start-up and the report left out), per phone. With workers the line comes before the
    # shared start instant, START_MARGIN_S after the parent chose it.
    last_ready = max((phone["ready_at_s"] for phone in ready), default=0.0)
    storm_cpu = None
    if started is not None:
        end = started + last_ready + (START_MARGIN_S if workers else 0.0)
        before, after = sampler.cpu_at(started), sampler.cpu_at(end)
        storm_cpu = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    lateness = report["network"].get("power_on_lateness_ms", {})
    return {
        "phones": len(phones), "ready": len(ready),
        "cpu_us_per_phone": storm_cpu / len(phones) * 1e6 if storm_cpu else float("nan"),
        "dora_per_s": in_period / duration,
        "loss": (sent - 2 * len(ready)) / sent if sent else 1.0,
        "late_p50_ms": lateness_percentile(lateness, 0.5), "late_p99_ms": lateness_percentile(lateness, 0.99),
        "late_max_ms": max(map(int, lateness)) if lateness else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per run")
    parser.add_argument("--rates", default="1000,2000,5000")
    parser.add_argument("--workers", default="0,2",
                        help="labsim runs per rate: 0 = one process, N = --workers N (shard i relays from "
                             f"{FLEET_RELAY}+i, all listed in Kea's config); comma-separated")
    args = parser.parse_args()
    enter_private_netns()
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    for tool in ("perfdhcp", "kea-dhcp4"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (bash .ci/install-peers)")
    with tempfile.TemporaryDirectory(prefix="bench-dhcp-fleet-") as tmp:
        workdir = Path(tmp)
        kea = start_kea(workdir)
        try:
            wait_until_answering(kea)
            print(f"Kea 2.x memfile, relayed; {args.duration} s of load per run")
            print(f"{'rate/s':>7} {'perfdhcp DORA/s':>15} {'loss':>7} {'labsim':>7} {'DORA/s':>7} {'loss':>7} "
                  f"{'ratio':>6} {'power-on late p50/p99/max ms':>29} {'CPU/phone':>10}")
            number = 0
            for rate in (int(r) for r in args.rates.split(",")):
                perf = perfdhcp(rate, args.duration)
                for workers in (int(w) for w in args.workers.split(",")):
                    number += 1
                    fleet = run_fleet(workdir, rate, args.duration, f"00:15:65:{number + 16:02x}:00:01", workers)
                    ratio = fleet["dora_per_s"] / perf.achieved if perf.achieved else 0.0
                    late = f"{fleet['late_p50_ms']:.0f} / {fleet['late_p99_ms']:.0f} / {fleet['late_max_ms']}"
                    print(f"{rate:>7} {perf.achieved:>15.0f} {perf.loss:>7.2%} {f'w{workers}' if workers else 'one':>7} "
                          f"{fleet['dora_per_s']:>7.0f} {fleet['loss']:>7.2%} {ratio:>6.2f} {late:>29} "
                          f"{fleet['cpu_us_per_phone']:>7.0f} us   ({fleet['ready']}/{fleet['phones']} leased)",
                          flush=True)
        finally:
            stop(kea)


if __name__ == "__main__":
    main()
