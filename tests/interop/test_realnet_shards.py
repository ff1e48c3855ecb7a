"""Two shards of one fleet on a real segment: `labsim run --shard i/2 --start-at T` twice in
the phones namespace, broadcasting each phone's own DHCP against dnsmasq (DHCP + TFTP) and
nginx in the server namespace, then `labsim merge` (what a Kubernetes Job does across
nodes). Same bridge lab as test_realnet_servers.py (198.18.N.0/24, removed after)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.interop.bridge_lab import bridge_lab
from tests.interop.realnet_servers import (CISCO_FIRST, ROOT, YEALINK_FIRST, dnsmasq_on, macs, nginx_on, scenario,
                                           write_files)

pytestmark = pytest.mark.interop

YEALINK, CISCO = 20, 4


def test_two_shards_on_a_real_segment_merge_into_one_fleet(tmp_path):
    with bridge_lab() as lab:
        tftp_root, www = tmp_path / "tftpboot", tmp_path / "www"
        write_files(lab, tftp_root, www, YEALINK, CISCO)
        path = tmp_path / "scenario.yaml"
        path.write_text(scenario(lab, yealink=YEALINK, cisco=CISCO, network_extra=", dhcp_rate: 200"))
        start_at = f"{time.time() + 4:.3f}"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with dnsmasq_on(lab, tmp_path, tftp_root), nginx_on(lab, www, tmp_path):
            shards = [subprocess.Popen(lab.in_phones(sys.executable, "-m", "labsim", "run", str(path),
                                                     "--shard", f"{index}/2", "--start-at", start_at,
                                                     "--report-dir", str(tmp_path / f"shard-{index}")),
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                      for index in range(2)]
            try:
                outputs = [shard.communicate(timeout=150)[0] for shard in shards]
            finally:
                for shard in shards:
                    if shard.poll() is None:
                        shard.kill()
        assert [shard.returncode for shard in shards] == [0, 0], outputs
        for output in outputs:  # each shard sends at most its half of the run's DHCP rate
            assert "at most 100/s" in output, output
        merged = subprocess.run([sys.executable, "-m", "labsim", "merge", str(tmp_path / "shard-0"),
                                 str(tmp_path / "shard-1"), "--report-dir", str(tmp_path / "merged")],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert merged.returncode == 0, merged.stdout + merged.stderr
        report = json.loads((tmp_path / "merged" / "report.json").read_text())
        expected = set(macs(YEALINK_FIRST, YEALINK) + macs(CISCO_FIRST, CISCO))
        assert {phone["mac"] for phone in report["phones"]} == expected
        assert all(phone["state"] == "ready" and phone["reboots"] == 1 for phone in report["phones"])
        # dnsmasq saw each phone's own MAC from both shards, and each shard released its leases.
        log = (tmp_path / "dnsmasq.log").read_text(errors="replace")
        assert set(re.findall(rf"DHCPACK\({lab.server_if}\) \S+ ([0-9a-f:]{{17}})", log)) == expected
        assert set(re.findall(rf"DHCPRELEASE\({lab.server_if}\) \S+ ([0-9a-f:]{{17}})", log)) == expected
