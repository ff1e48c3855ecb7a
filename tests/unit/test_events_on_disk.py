"""A run writes events.jsonl as it goes and holds only what it has not written yet, and
each phone keeps its first and last events: a day of hourly resyncs in virtual time."""

import io
import json

from labsim.observe import events_stream
from labsim.run import EVENTS_PER_PHONE_IN_REPORT
from labsim.scenario.loader import load_scenario
from labsim.virtual import run as virtual_run

SCENARIO = """\
name: events-on-disk
seed: 4
duration: 1d
services:
  dhcp: {port: 6767, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.3.250}, lease_time_s: 7200,
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 60\\n"
fleets:
  - {vendor: yealink, models: {T46S: 5}, first_mac: "00:15:65:00:00:01"}
"""


def test_a_day_is_written_hour_by_hour_and_phones_keep_their_first_and_last_events(tmp_path, monkeypatch):
    held, written = [], []
    real_take, real_write = events_stream.EventStream.take, events_stream.EventStream._write

    def take(stream, actions=()):
        held.append(len(stream.log.rows))  # what the run held since the last take
        real_take(stream, actions)

    def write(stream, rows):
        real_write(stream, rows)
        written.append(stream.rows_written)

    monkeypatch.setattr(events_stream.EventStream, "take", take)
    monkeypatch.setattr(events_stream.EventStream, "_write", write)
    runs = []
    monkeypatch.setattr(virtual_run.VirtualScenarioRun, "close", lambda self: runs.append(self))
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    loaded = load_scenario(str(path))
    code = virtual_run.run_virtual(loaded, report_dir=str(tmp_path / "report"), stream=io.StringIO())
    assert code == 0
    lines = (tmp_path / "report" / "events.jsonl").read_text().splitlines()
    assert len(held) >= 24 and written[-1] == len(lines) - 1  # hourly, every line once
    assert len([count for count in written if count < written[-1] / 2]) >= 10  # written as the day went
    assert 0 < max(held) < (len(lines) - 1) / 10  # never more than an hour's rows at once
    phone = runs[0].members[0].phone
    own = [line for line in map(json.loads, lines) if line["mac"] == phone.mac and line["kind"] in ("state", "step")]
    assert phone.events_dropped > 0 and len(phone.events) + phone.events_dropped == len(own)
    assert len(phone.events) <= EVENTS_PER_PHONE_IN_REPORT * 5 // 4
    head = EVENTS_PER_PHONE_IN_REPORT // 2
    assert [event[2] for event in phone.events[:head]] == [line["detail"] for line in own[:head]]
    assert phone.events[-1][2] == own[-1]["detail"]
