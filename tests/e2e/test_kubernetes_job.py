"""deploy/kubernetes/: the manifests are valid Kubernetes objects, and the Indexed Job's
pod command, run here once per completion index against the servers `labsim serve`
runs from the same ConfigMap, then `labsim merge`, gives what one process gives."""

from __future__ import annotations

import calendar
import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate  # the test extra; ships the API schemas, so this works offline
import pytest
import yaml

from tests.relocate import moved_ports, relocated

from tests.serve_process import labsim_serve

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def manifests() -> dict[str, dict]:
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


def test_the_manifests_validate_against_the_kubernetes_api_schema():
    objects = manifests()
    assert set(objects) == {"ConfigMap", "Deployment", "Job"}
    for document in objects.values():
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    job = objects["Job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    # The validation can fail: a field the API does not have, and a wrong value.
    broken = copy.deepcopy(objects["Job"])
    broken["spec"]["completionsMode"] = "Indexed"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    broken = copy.deepcopy(objects["Job"])
    broken["spec"]["parallelism"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in a container's command and args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def outcome(report):
    return {p["mac"]: (p["state"], p["reboots"], p["files"], p["flash"]["settings_count"]) for p in report["phones"]}


def test_the_jobs_pod_command_per_index_then_merge_equals_one_process(tmp_path):
    objects = manifests()
    scenario_dir = tmp_path / "scenario"
    scenario_dir.mkdir()
    data = objects["ConfigMap"]["data"]
    # On fresh ports, not the manifest's fixed ones (a `labsim serve` may hold them): the
    # scenario and every file beside it, moved alike (tests/relocate.py).
    source = tmp_path / "configmap"
    source.mkdir()
    (source / "scenario.yaml").write_text(data["scenario.yaml"])
    _, moves = relocated(source / "scenario.yaml", scenario_dir)
    for name, text in data.items():
        if name != "scenario.yaml":
            (scenario_dir / name).write_text(moved_ports(text, moves))
    scenario = scenario_dir / "scenario.yaml"

    one = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stdout + one.stderr

    job = objects["Job"]["spec"]
    count = job["completions"]
    [container] = job["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    local = {"scenario": str(scenario_dir), "reports": str(tmp_path / "reports")}
    start_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
    processes = []
    with labsim_serve(str(scenario), str(tmp_path / "serve")) as serve:
        serve.wait_for("labsim serve")
        for index in range(count):
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            env.update(JOB_COMPLETION_INDEX=str(index), START_AT=start_at)
            argv = [_expand(part, env) for part in container["command"] + container.get("args", [])]
            for mount_path, volume in mounts.items():  # the pod's volumes, as folders here
                argv = [local[volume] + part[len(mount_path):] if part.startswith(mount_path + "/") else part
                        for part in argv]
            assert argv[0] == "labsim"
            processes.append(subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
        try:
            outputs = [process.communicate(timeout=120)[0] for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
    assert [p.returncode for p in processes] == [0] * count, outputs
    shard_dirs = sorted(str(path) for path in (tmp_path / "reports").iterdir())
    assert len(shard_dirs) == count
    merged = subprocess.run([sys.executable, "-m", "labsim", "merge", *shard_dirs, "--report-dir",
                             str(tmp_path / "merged")], capture_output=True, text=True, timeout=120)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    report_one = json.loads((tmp_path / "one" / "report.json").read_text())
    report_merged = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert len(report_merged["phones"]) == 200
    assert outcome(report_merged) == outcome(report_one)
    assert [e["passed"] for e in report_merged["expectations"]] == [True] * 4
    # Each shard relayed DHCP from its own address, and all started on the one instant.
    instant = calendar.timegm(time.strptime(start_at, "%Y-%m-%dT%H:%M:%SZ"))
    for index, directory in enumerate(shard_dirs):
        record = json.loads((Path(directory) / "shard.json").read_text())
        assert record["shard"] == {"index": index, "count": count}
        assert record["start_at"] == instant
        assert f"DHCP via relay 127.0.0.{2 + index} -> 127.0.0.1:{moves[6767]}" in outputs[index]
