"""A `labsim run --ui` (or `serve --ui`) in a subprocess, for the dashboard's tests.

The dashboard listens on port 0 (a free one); its URLs are read from the run's output.
The lab is closed with SIGINT (Ctrl-C), which writes the final report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from tests.relocate import moved_ports, relocated

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URLS = re.compile(r"labsim: dashboard controls: (http://\S+)/\?token=(\S+)")

SMALL_LAB = """\
name: dashboard-lab
time_limit_s: 60
services:
  dhcp: {port: 6767, options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      static.network.lldp.enable = 1
      account.1.sip_server.1.address = 127.0.0.1
  per_phone:
    - name: "{mac}.cfg"
      text: "#!version:1.0.0.1\\naccount.1.user_name = {index}\\n"
fleets:
  - {name: desk, vendor: yealink, models: {T46S: 4, T54S: 2}, first_mac: "00:15:65:77:00:01"}
expect:
  - phones.ready == 100%
"""


class DashboardLab:
    def __init__(self, tmp_path, scenario_text: str = SMALL_LAB, command: str = "run", extra=()):
        self.tmp_path = tmp_path
        # On fresh ports, never the scenario's fixed ones (a `labsim serve` may hold them):
        # every mention of a service port, here and in actions (act), is moved alike.
        given = tmp_path / "given" / "lab.yaml"
        given.parent.mkdir(parents=True, exist_ok=True)
        given.write_text(scenario_text)
        self.scenario, self.moves = relocated(given, tmp_path, scenario_text)
        self.report_dir = tmp_path / "report"
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labsim", command, str(self.scenario), "--report-dir", str(self.report_dir),
             "--ui", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path),
            # Ctrl-C (SIGINT) closes the lab even when the tests run in the background, where
            # the shell ignores SIGINT and a child inherits that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base, self.token = self._wait_for_urls()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)

    def _wait_for_urls(self, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.output):
                match = URLS.search(line)
                if match:
                    return match.group(1) + "/", match.group(2)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("the dashboard did not start:\n" + "".join(self.output))

    @property
    def control_url(self) -> str:
        return f"{self.base}?token={self.token}"

    def request(self, path: str, *, body: bytes | None = None, token: str | None = None, method=None):
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["x-labsim-token"] = token
        request = urllib.request.Request(self.base + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str, **kwargs):
        status, body = self.request(path, **kwargs)
        return status, json.loads(body)

    def moved(self, text: str) -> str:
        """``text`` with the scenario's service ports replaced as in the running copy."""
        return moved_ports(text, self.moves)

    def act(self, text: str, token: str | None = "use-mine"):
        token = self.token if token == "use-mine" else token
        return self.json("api/action", body=json.dumps({"do": self.moved(text)}).encode(), token=token)

    def wait_until(self, predicate, timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n" + "".join(self.output[-40:]))

    def states(self) -> dict:
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.request("metrics")
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            if family.name == "labsim_phones":
                return {sample.labels["state"]: int(sample.value) for sample in family.samples}
        return {}

    def close(self) -> int:
        """Ctrl-C: the final report is written; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode

    def report(self) -> dict:
        return json.loads((self.report_dir / "report.json").read_text())
