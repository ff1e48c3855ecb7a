"""The timeline looks at its conditions again only when a phone has changed state."""

from labsim.scenario.loader import parse_scenario_text
from labsim.timeline import Timeline
from labsim.virtual.clock import HeapClock

SCENARIO = """\
name: t
services: {dhcp: {port: 6767}}
fleets: [{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}]
timeline:
  - when: phones.ready >= 1
    do: {remove_fault: nothing}
"""


class Control:
    def __init__(self):
        self.looks = 0
        self.state_changes = 0
        self.ready = 0

    def changes(self):
        return self.state_changes

    def metrics(self, wanted):
        self.looks += 1
        self.wanted = wanted
        return {"phones.ready": self.ready}, {}, 1

    def remove_fault(self, name):
        return f"no fault named {name}"

    def timeline_changed(self):
        pass


def test_no_state_change_no_new_look_and_a_change_is_seen():
    scenario = parse_scenario_text(SCENARIO)
    clock, control = HeapClock(), Control()
    timeline = Timeline(scenario.timeline, control, clock, 0.0, 1)
    timeline.start()
    clock.advance(3600)  # 7,200 ticks, nothing changed: one look
    assert control.looks == 1 and not timeline.log
    control.ready, control.state_changes = 1, 1
    clock.advance(1)
    assert control.looks == 2 and [r.action for r in timeline.log] == ["remove_fault"]
    assert control.wanted == {"phones.ready"}  # what the condition reads, not every metric
