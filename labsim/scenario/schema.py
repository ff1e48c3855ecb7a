"""The scenario file's schema: what a user may write, with defaults and allowed values.

Pydantic models with ``extra="forbid"`` everywhere, so a misspelt key is an error that
names the allowed keys rather than something silently ignored. ``labsim schema`` prints
the JSON Schema generated from these models, for editors.

One module per section of the file: ``fields`` (shared types), ``services``, ``fleets``,
``faults``, ``timeline`` and ``expectations`` (the models and the expectation grammar).
This module holds the whole file (``Scenario``) and re-exports every section's names.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from labsim.scenario.calendar_start import START_SCHEMA, parse_start
from labsim.scenario.durations import parse_duration
from labsim.scenario.fields import (  # noqa: F401  (re-exported)
    IPv4,
    InterfaceName,
    MAC_PATTERN,
    ModelName,
    NetworkOrAddress,
    Port,
    Strict,
)
from labsim.scenario.services import (  # noqa: F401  (re-exported)
    AddressPool,
    DhcpService,
    DnsRecord,
    DnsService,
    FtpService,
    HttpAuth,
    HttpService,
    PnpService,
    PnpUrl,
    Services,
    TftpService,
)
from labsim.scenario.fleets import (  # noqa: F401  (re-exported)
    BootPattern,
    Fleet,
    FleetNetwork,
    PLACEHOLDER_EXAMPLE,
    PerPhoneFile,
    PoissonBoot,
    PreloadedFlash,
    Provisioning,
    RampBoot,
    StormBoot,
    parse_host_port,
)
from labsim.scenario.expectations import (  # noqa: F401  (re-exported)
    BadExpectation,
    Check,
    Expectation,
    ExpectationItem,
    ExpectationText,
    FlashCheck,
    FlashExpectation,
    OPERATORS,
    PER_PHONE_METRICS,
    STATS,
    Verdict,
    evaluate,
    evaluate_flash,
    known_metric,
    parse_expectation,
)
from labsim.scenario.faults import (  # noqa: F401  (re-exported)
    DATAGRAM_FAULT_SERVICES,
    FAULT_KEY_SERVICES,
    FAULT_SERVICES,
    Fault,
    Probability,
)
from labsim.scenario.timeline import (  # noqa: F401  (re-exported)
    Action,
    BumpVersion,
    CheckSyncAction,
    EditFile,
    PhoneSelection,
    ReplaceFile,
    SERVICE_NAMES,
    ServiceName,
    TimelineEntry,
)


class Lab(Strict):
    """A training exercise shown on the dashboard (``run --ui``): the task, hints the
    student reveals one by one, and a check the student runs from the page."""

    task: str = Field(description="what the student is asked to do (markdown)")
    hints: list[str] = Field(default_factory=list, description="revealed one at a time, in order (markdown)")
    check: list[ExpectationItem] = Field(
        default_factory=list, description="expectations judged on the lab as it is when the student asks "
        "(default: the scenario's expect)")

    def expectations(self) -> list[Expectation]:
        return [Expectation(check=i) if isinstance(i, str) else i for i in self.check]

    def public(self) -> dict:
        return {"task": self.task, "hints": list(self.hints),
                "check": [e.check for e in self.expectations()]}


class Scenario(Strict):
    name: str = Field(description="shown in the report and the summary")
    description: str = ""
    seed: int = Field(1, description="the same seed, the same run: per-phone randomness, boot spread, faults")
    time_limit_s: float = Field(300, gt=0, description="the run stops here; unfinished phones are reported "
                                                       "in the state they were stuck in")
    # --- virtual time (issue 15): how much time to simulate, and on which clock
    duration: Annotated[float, BeforeValidator(parse_duration)] | None = Field(
        None, description="run this long (90s, 15m, 12h, 7d), whether or not the phones settle; "
        "with clock: virtual, simulated time (time_limit_s stays wall-clock). On the real clock a duration "
        "longer than time_limit_s could never be reached: run refuses it (--duration too), validate notes it "
        "(--clock virtual runs the file)")
    clock: Literal["real", "virtual"] = Field(
        "real", description="virtual: an in-memory lab whose time jumps from event to event (labsim's own "
        "DHCP, HTTP, TFTP, FTP, DNS and PnP; see docs/virtual-time.md); with run --workers N, N shards "
        "each with its own clock and copy of the services (a timeline when: is judged on the whole fleet)")
    clock_starts: Annotated[float, BeforeValidator(parse_start), WithJsonSchema(START_SCHEMA)] | None = Field(
        None, description="the date and time (UTC) the phones' clocks read when the run begins: their resync "
        "windows and summer time follow it, e.g. 2026-03-27 12:00 for the weekend Europe's clocks go forward "
        "(default Sunday 2026-01-04 00:00); with clock: virtual, the simulated calendar starts there")
    # --- end virtual time
    services: Services = Services()
    provisioning: Provisioning = Provisioning()
    network: FleetNetwork = FleetNetwork()
    fleets: list[Fleet] = Field(min_length=1)
    timeline: list[TimelineEntry] = Field(default_factory=list, description="actions at a time or on a condition")
    faults: list[Fault] = Field(default_factory=list, description="faults active from the start")
    expect: list[ExpectationItem] = Field(
        default_factory=list, description="'METRIC OP VALUE [during DAYS HH:MM-HH:MM]' strings (e.g. "
        "'phones.ready == 100%', 'service.http.requests == 0 during mon-fri 08:00-18:00'), {name, check}, or "
        "{flash: {...}} (see README: Expectations)"
    )
    lab: Lab | None = Field(None, description="a training exercise for the dashboard (docs/dashboard.md)")

    def expectations(self) -> list[Expectation]:
        return [Expectation(check=i) if isinstance(i, str) else i for i in self.expect]
