"""The timeline looks at its conditions again only when a phone has changed state."""

import pytest

from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.timeline import Timeline
from labsim.virtual.clock import HeapClock

SCENARIO = """\
name: t
services: {dhcp: {port: 6767}}
fleets: [{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}]
timeline:
  - when: phones.ready >= 1
    do: {remove_fault: all}
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


class QuietControl(Control):
    """A control on a simulated clock: it says when its next call is due."""

    def __init__(self, clock):
        super().__init__()
        self.clock, self.calls = clock, 0

    def changes(self):
        self.calls += 1
        return self.state_changes

    def nothing_due_before(self):
        return self.clock.next_time()


def test_ticks_before_the_next_call_due_are_not_run_and_the_change_is_seen_at_the_same_tick():
    """Nothing can change before the next call due: the timeline runs the last tick before
    it and not those between (here 7,000 of them), and judges at the tick one after the
    change, at the instant tick after tick would have (the same floats)."""
    scenario = parse_scenario_text(SCENARIO)
    seen = {}
    for name, control_class in (("every tick", Control), ("skipping", QuietControl)):
        clock = HeapClock(1767484800.0)
        control = control_class(clock) if control_class is QuietControl else control_class()
        timeline = Timeline(scenario.timeline, control, clock, 1767484800.0, 1)
        timeline.start()

        def change(control=control):
            control.ready, control.state_changes = 1, 1

        clock.callLater(3600.2, change)
        clock.advance(3700)
        seen[name] = (timeline.log[0].t, getattr(control, "calls", None))
    assert seen["every tick"][0] == seen["skipping"][0] == 3600.5
    assert seen["skipping"][1] < 10  # of the 7,201 ticks up to the change


@pytest.mark.parametrize("condition, says", [
    ("service.http.requests > 40 during mon", "'during' is for expectations"),
    ("service.dhcp.requests_per_min.max > 100 during 08:00-18:00", "'during' is for expectations"),
])
def test_a_condition_on_what_the_timeline_cannot_read_is_refused_with_its_line(condition, says):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(SCENARIO.replace("phones.ready >= 1", condition), "s.yaml")
    [problem] = caught.value.problems
    assert problem.field == "timeline[0].when" and problem.mark.line == 5 and says in problem.message
