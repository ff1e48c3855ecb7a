"""DORA/s of labsim's DHCP server and of Kea, both under ISC perfdhcp, in one run.

A benchmark, not a test. Needs root: Kea 2.2 always answers relays on port 67, and the
whole run happens in a private network namespace (``unshare --net``) whose loopback gets
127.0.0.2 for perfdhcp's relay address, so nothing touches the host's ports.

    sudo python benchmarks/bench_dhcp.py [--duration 4] [--rates 1000,2000,...]

For each server: perfdhcp runs at rising rates (``-r``) for ``--duration`` seconds each,
until more than ``--max-loss`` of the exchanges fail; the best rate it kept up with is
reported, with perfdhcp's measured completed-DORA/s. Then one flood run (no ``-r``):
the completed DORA/s when perfdhcp sends as fast as it can. Both servers get the same
/8 pool so that no step runs out of addresses.

``--broadcast`` (benchmarks/bench_dhcp_broadcast.py) measures the other side: labsim's
fleet broadcasting each phone's own DHCP on a veth against Kea in a namespace, beside
``perfdhcp -l <veth>`` against the same Kea, DORA/s at < 1 % loss::

    sudo python benchmarks/bench_dhcp.py --broadcast [--duration 4] [--rates 250,500,...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETNS_FLAG = "LABSIM_BENCH_IN_NETNS"
SERVER = "127.0.0.1"
RELAY = "127.0.0.2"
PORT = 67
SUBNET, POOL_START, POOL_END = "10.0.0.0/8", "10.0.0.10", "10.255.255.250"


@dataclass
class Run:
    rate: int | None  # None: flood
    achieved: float  # completed 4-way exchanges per second, as perfdhcp measures it
    sent: int
    acked: int

    @property
    def loss(self) -> float:
        return 1 - self.acked / self.sent if self.sent else 1.0


def perfdhcp(rate: int | None, duration: int) -> Run:
    cmd = ["perfdhcp", "-4", "-l", RELAY, "-L", str(PORT), "-N", str(PORT), "-p", str(duration),
           "-R", "4294967295", SERVER]  # fmt: skip
    if rate:
        cmd[2:2] = ["-r", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    achieved = re.search(r"Rate: ([\d.]+)", out)
    sent = re.search(r"DISCOVER-OFFER\*\*\*\nsent packets: (\d+)", out)
    acked = re.search(r"REQUEST-ACK\*\*\*\nsent packets: \d+\nreceived packets: (\d+)", out)
    if not (achieved and sent and acked):
        raise RuntimeError(f"cannot read perfdhcp's report:\n{out}")
    return Run(rate, float(achieved.group(1)), int(sent.group(1)), int(acked.group(1)))


def wait_until_answering(proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with status {proc.returncode}")
        try:
            if perfdhcp(50, 1).acked > 0:
                return
        except RuntimeError:
            pass
    raise TimeoutError("server never answered perfdhcp")


def start_labsim(workdir: Path) -> subprocess.Popen:
    # stderr to a file: a pipe nobody reads would block the server once it fills.
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsim.services.dhcp_udp", "--host", SERVER, "--port", str(PORT),
         "--subnet", SUBNET, "--pool-start", POOL_START, "--pool-end", POOL_END, "--option", "router=10.0.0.1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=(workdir / "labsim.log").open("w"), text=True,
    )  # fmt: skip
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=15) or not proc.stdout.readline().startswith("READY"):
            proc.kill()
            raise RuntimeError("labsim DHCP server did not start")
    return proc


def start_kea(workdir: Path) -> subprocess.Popen:
    config = {
        "Dhcp4": {
            # One address of lo, so perfdhcp can have 127.0.0.2:67 for itself.
            "interfaces-config": {"interfaces": [f"lo/{SERVER}"], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": False, "lfc-interval": 0},
            "valid-lifetime": 3600,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": SUBNET,
                    "pools": [{"pool": f"{POOL_START} - {POOL_END}"}],
                    "relay": {"ip-addresses": [RELAY]},
                    "option-data": [{"name": "routers", "data": "10.0.0.1"}],
                }
            ],
            "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stderr"}], "severity": "WARN"}],
        }
    }
    path = workdir / "kea-dhcp4.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "KEA_PIDFILE_DIR": str(workdir), "KEA_LOCKFILE_DIR": str(workdir)}
    return subprocess.Popen(
        [shutil.which("kea-dhcp4") or "/usr/sbin/kea-dhcp4", "-c", str(path)],
        env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "kea.log").open("w"), text=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(name: str, proc: subprocess.Popen, rates: list[int], duration: int, max_loss: float) -> dict:
    try:
        wait_until_answering(proc)
        best: Run | None = None
        for rate in rates:
            run = perfdhcp(rate, duration)
            print(f"  {name:7} -r {rate:6}: {run.achieved:8.0f} DORA/s, loss {run.loss:6.2%}", flush=True)
            if run.loss > max_loss:
                break
            best = run
        flood = perfdhcp(None, duration)
        print(f"  {name:7} flood    : {flood.achieved:8.0f} DORA/s, loss {flood.loss:6.2%}", flush=True)
        return {"sustained": best, "flood": flood}
    finally:
        stop(proc)


def enter_private_netns() -> None:
    """Re-run this script in a new network namespace with lo up and 127.0.0.2 on it."""
    if os.environ.get(NETNS_FLAG):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "addr", "add", f"{RELAY}/8", "dev", "lo"], check=True)
        return
    if os.geteuid() != 0:
        sys.exit("bench_dhcp needs root (Kea answers relays on port 67; the run uses a private netns)")
    env = {**os.environ, NETNS_FLAG: "1"}
    sys.exit(subprocess.call(["unshare", "--net", "--", sys.executable, *sys.argv], env=env))


def main() -> None:
    if "--broadcast" in sys.argv[1:]:  # labsim's broadcast phones vs perfdhcp -l (bench_dhcp_broadcast.py)
        from bench_dhcp_broadcast import main as broadcast

        broadcast(sys.argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per perfdhcp run")
    parser.add_argument("--rates", default="1000,2000,3000,4000,5000,6000,8000,10000")
    parser.add_argument("--max-loss", type=float, default=0.005, help="loss above which a rate is not sustained")
    args = parser.parse_args()
    enter_private_netns()
    for tool in ("perfdhcp", "kea-dhcp4"):
        if not (shutil.which(tool) or os.access(f"/usr/sbin/{tool}", os.X_OK)):
            sys.exit(f"{tool} is not installed (bash .ci/install-peers)")
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    rates = [int(r) for r in args.rates.split(",")]

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-dhcp-") as workdir:
        print(f"perfdhcp, {args.duration:g} s per step, a rate counts if loss <= {args.max_loss:.1%}")
        results["labsim"] = measure("labsim", start_labsim(Path(workdir)), rates, args.duration, args.max_loss)
        results["kea"] = measure("kea", start_kea(Path(workdir)), rates, args.duration, args.max_loss)

    print()
    print(f"{'server':8} {'sustained -r':>12} {'DORA/s':>8} {'flood DORA/s':>13}")
    for name, result in results.items():
        sustained = result["sustained"]
        rate = f"{sustained.rate}" if sustained else "-"
        achieved = f"{sustained.achieved:.0f}" if sustained else "-"
        print(f"{name:8} {rate:>12} {achieved:>8} {result['flood'].achieved:>13.0f}")
    lab, kea = results["labsim"], results["kea"]
    if lab["sustained"] and kea["sustained"]:
        print(f"labsim/kea sustained: {lab['sustained'].achieved / kea['sustained'].achieved:.2f}")
    print(f"labsim/kea flood:     {lab['flood'].achieved / kea['flood'].achieved:.2f}")


if __name__ == "__main__":
    main()
