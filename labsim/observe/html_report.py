"""``report.html``: the run at a glance, one self-contained file that works offline.

No external scripts, styles or fonts: the plots are SVG drawn here in Python, and the
only script is the short one below that pages and filters the phone table (a fleet of
thousands would otherwise be a page nobody can scroll). Everything is computed from the
report dict, the phones' stage timings and the event rows of ``observe.events_log``, so
the page can be rebuilt from a finished run's files.

Plots:
- phones by state over time (stacked, from every phone's state changes);
- a latency histogram per stage and for power-on to ready, p50/p95/p99 marked;
- requests per second per service (DHCP messages from phones, downloads by scheme).
"""

from __future__ import annotations

import html
import json
import math
import os
from datetime import datetime, timezone
from urllib.parse import urlsplit

from labsim.observe.latencies import counted_items, counted_percentile
from labsim.observe.problems import problem_line
from labsim.phones.phone import STATES
from labsim.scenario.durations import clock_text, format_duration

STATE_COLORS = {
    "off": "#c9ced6", "booting": "#9ecae1", "dhcp": "#4292c6", "provisioning": "#fd8d3c",
    "rebooting": "#9e6ac8", "ready": "#41ab5d", "failed": "#e0403a",
}
# Bottom to top in the stacked plot: settled phones at the bottom, where they grow.
STACK_ORDER = ("ready", "failed", "provisioning", "rebooting", "dhcp", "booting", "off")
SERVICE_COLORS = {"dhcp": "#4292c6", "tftp": "#fd8d3c", "http": "#41ab5d", "https": "#238b45",
                  "ftp": "#9e6ac8", "other": "#888888"}
STATE_SAMPLES = 400
HISTOGRAM_BINS = 30
TABLE_EVENT_BUDGET = 150_000  # events embedded for the phone table: ~10 MB of page at most
PAGE_SIZE = 50
# A state shorter than this share of the run (in %) is also drawn as a tick on a phone's
# timeline: at the table's ~400 px, about a pixel.
BRIEF_SHARE = 0.3

WIDTH, HEIGHT = 900, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 20, 16, 40


# --- numbers ------------------------------------------------------------------------


def nice_step(span: float, target: int = 6) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``target`` ticks."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def ticks(top: float, target: int = 6, whole: bool = False) -> list[float]:
    step = nice_step(top, target)
    if whole:  # counts: no tick at 0.2 of a phone
        step = max(1.0, step)
    count = int(math.floor(top / step + 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def x_ticks_between(low: float, high: float, target: int) -> list[float]:
    step = nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9)
    return [round(i * step, 10) for i in range(first, int(math.floor(high / step + 1e-9)) + 1)]


# A time axis over two minutes steps as a clock does, and says its ticks as a scenario
# writes a duration: a week's ticks fall on the days (0, 1d, 2d ...), where a timeline's
# "at: 6d" puts its action, not on 0, 100000, 200000 seconds.
SECONDS_AXIS_MAX_S = 120.0
_TIME_STEPS_S = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def time_axis(end_t: float, target: int = 10) -> tuple[str, list[float], list[str]]:
    """(axis title, tick values, tick labels) for a time axis from 0 to ``end_t`` seconds."""
    if end_t < SECONDS_AXIS_MAX_S:
        values = x_ticks_between(0.0, end_t, target)
        return "seconds since the run started", values, _tick_labels(values)
    step = next((s for s in _TIME_STEPS_S if end_t / s <= target), None)
    if step is None:  # past eight weeks: whole weeks
        step = 604800 * math.ceil(end_t / 604800 / target)
    values = [float(i * step) for i in range(int(end_t // step) + 1)]
    return "time since the run started", values, ["0"] + [format_duration(v) for v in values[1:]]


# A long virtual run's time ticks also say where they fall on the lab's calendar, UTC,
# under the duration: a resync window, a working day (`during`) or a clock change reads by
# the day and the hour. From a half-hour step on (a run of a few hours or more).
CALENDAR_MIN_STEP_S = 1800
CALENDAR_ROW = 13  # the plot's extra height for that second row of tick labels


def calendar_notes(values: list[float], calendar_from: float | None) -> list[str] | None:
    """The lab's calendar at each tick of ``time_axis`` (``calendar_from``: the run's start,
    epoch seconds, UTC): a midnight by its day and date (``Mon 5 Jan``), another moment by
    its time (``06:00``), with the day's name on the first tick of each day
    (``Mon 06:00``). None when the axis is too short for it or there is no calendar."""
    if calendar_from is None or len(values) < 2 or values[1] - values[0] < CALENDAR_MIN_STEP_S:
        return None
    notes, day = [], None
    for value in values:
        moment = datetime.fromtimestamp(calendar_from + value, timezone.utc)
        if (moment.hour, moment.minute, moment.second) == (0, 0, 0):
            notes.append(f"{moment:%a} {moment.day} {moment:%b}")
        elif moment.date() != day:
            notes.append(f"{moment:%a %H:%M}")
        else:
            notes.append(f"{moment:%H:%M}")
        day = moment.date()
    return notes


def calendar_from_report(report: dict) -> float | None:
    """Where a virtual run starts on the lab's calendar (epoch seconds), or None."""
    simulated = report.get("simulated")
    try:
        return datetime.fromisoformat(simulated["from"]).timestamp() if simulated else None
    except (KeyError, TypeError, ValueError):
        return None


def _tick_labels(values: list[float]) -> list[str]:
    """Tick labels with as many decimals as the step between ticks needs (0.405, 0.41,
    0.415 — not 0.41, 0.41, 0.42)."""
    if len(values) < 2:
        return [_fmt(v) for v in values]
    step = values[1] - values[0]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return [f"{v:.{decimals}f}" for v in values]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value >= 1000:  # past .3g's reach: a renewal unanswered for 9 hours reads 0d 09:00:00, not 3.24e+04 s
        return clock_text(value)
    return f"{value:.3g} s"


def state_changes(phone: dict) -> list[tuple[float, str, str]]:
    """A phone's state changes as (t, from, to): ``off`` until its first one."""
    changes = []
    previous = "off"
    for event in phone["events"]:
        if event["kind"] != "state" or event["state"] == previous:
            continue
        changes.append((event["t"], previous, event["state"]))
        previous = event["state"]
    return changes


def state_series(changes: list[tuple[float, str, str]], phones: int, end_t: float,
                 samples: int = STATE_SAMPLES) -> tuple[list[float], dict[str, list[int]]]:
    """Phones in each state at ``samples + 1`` evenly spaced moments from 0 to ``end_t``,
    from every phone's ``state_changes``: each moves a phone from one state to another."""
    changes = sorted(changes, key=lambda change: change[0])
    end_t = max(end_t, changes[-1][0] if changes else 0.0, 1e-3)
    times = [end_t * k / samples for k in range(samples + 1)]
    counts = dict.fromkeys(STATES, 0)
    counts["off"] = phones
    series = {state: [] for state in STATES}
    index = 0
    for moment in times:
        while index < len(changes) and changes[index][0] <= moment:
            _, old, new = changes[index]
            counts[old] -= 1
            counts[new] += 1
            index += 1
        for state in STATES:
            series[state].append(counts[state])
    return times, series


def histogram_range(values) -> tuple[float, float]:
    """The x range of a histogram: from 0, unless every value sits far from it (then the
    bars would all crowd one corner), to a little past the largest value."""
    return _range_of(counted_items(values))


def _range_of(items: list[tuple[float, int]]) -> tuple[float, float]:
    if not items:
        return 0.0, 1.0
    low, high = items[0][0], items[-1][0]
    span = high - low
    pad = (span or high or 1.0) * 0.06
    start = 0.0
    # Zoomed in on a spread far from zero; one value alone (in virtual time every download
    # of a lab without faults takes one 1 ms hop) is shown from zero, where its axis reads
    # 0, 0.0002 ... 0.001 s and not 0.00092, 0.00094 ... around a single bar.
    if span > 0 and low > 0.25 * high:
        step = nice_step(span + 2 * pad, 6)
        start = max(0.0, math.floor((low - pad) / step) * step)
    return start, high + pad


def histogram(values, bins: int = HISTOGRAM_BINS) -> tuple[float, float, list[int]]:
    """(start, bin width, counts) of ``bins`` equal bins covering every value (a list, or
    an observe.latencies.Latencies)."""
    return _bins_of(counted_items(values), bins)


def _bins_of(items: list[tuple[float, int]], bins: int = HISTOGRAM_BINS) -> tuple[float, float, list[int]]:
    start, end = _range_of(items)
    width = (end - start) / bins
    if not width > 0:  # values so close to zero that the width underflows
        width = 1.0 / bins
    counts = [0] * bins
    # Each distinct value binned once, with its count: a long run's latencies are millions
    # of a few values (in virtual time every download of a lab without faults takes one hop).
    for value, times in items:
        counts[min(bins - 1, max(0, int((value - start) / width)))] += times
    return start, width, counts


def request_times(rows: list[tuple]) -> dict[str, list[float]]:
    """When each request left, by service: phones' DHCP messages, downloads by URL scheme."""
    services: dict[str, list[float]] = {}
    for row in rows:
        kind = row[2]
        if kind == "dhcp":
            if row[3] == "out":
                services.setdefault("dhcp", []).append(row[0])
        elif kind == "fetch":
            scheme = urlsplit(row[3]).scheme or "other"
            services.setdefault(scheme if scheme in SERVICE_COLORS else "other", []).append(row[0] - row[6])
    return services


def rate_series(times_by_service: dict[str, list[float]], end_t: float, buckets: int = 40) -> tuple[float, dict[str, list[float]]]:
    """(bucket width in seconds, requests per second in each bucket) per service."""
    end_t = max([end_t] + [max(times) for times in times_by_service.values() if times] + [1e-3])
    width = nice_step(end_t, buckets)
    count = int(math.floor(end_t / width)) + 1
    rates = {}
    for service, times in times_by_service.items():
        bins = [0] * count
        for moment in times:
            bins[min(count - 1, max(0, int(moment / width)))] += 1
        rates[service] = [n / width for n in bins]
    return width, rates


# --- SVG ------------------------------------------------------------------------------


class _Plot:
    """Maps data to the pixels of one chart and draws its axes."""

    def __init__(self, x_max: float, y_max: float, width: int = WIDTH, height: int = HEIGHT, x_min: float = 0.0,
                 bottom: int = MARGIN_BOTTOM):
        self.width, self.height = width, height
        self.x_min = x_min
        self.x_max = x_max if x_max > x_min else x_min + 1.0
        self.y_max = y_max if y_max > 0 else 1.0
        self.x0, self.x1 = MARGIN_LEFT, width - MARGIN_RIGHT
        self.y0, self.y1 = height - bottom, MARGIN_TOP

    def x(self, value: float) -> float:
        return round(self.x0 + (self.x1 - self.x0) * (value - self.x_min) / (self.x_max - self.x_min), 1)

    def y(self, value: float) -> float:
        return round(self.y0 - (self.y0 - self.y1) * value / self.y_max, 1)

    def axes(self, x_label: str, y_label: str, x_ticks: list[float] | None = None, *,
             counts: bool = False, x_tick_labels: list[str] | None = None,
             x_tick_notes: list[str] | None = None) -> list[str]:
        parts = []
        y_values = ticks(self.y_max, 5, whole=counts)
        for value, text in zip(y_values, _tick_labels(y_values)):
            y = self.y(value)
            parts.append(f'<line class="grid" x1="{self.x0}" y1="{y}" x2="{self.x1}" y2="{y}"/>'
                         f'<text class="tick" x="{self.x0 - 6}" y="{y + 4}" text-anchor="end">{text}</text>')
        x_values = x_ticks if x_ticks is not None else x_ticks_between(self.x_min, self.x_max, 8)
        for value, text in zip(x_values, x_tick_labels or _tick_labels(x_values)):
            x = self.x(value)
            parts.append(f'<line class="axis" x1="{x}" y1="{self.y0}" x2="{x}" y2="{self.y0 + 4}"/>'
                         f'<text class="tick" x="{x}" y="{self.y0 + 16}" text-anchor="middle">{text}</text>')
        for value, note in zip(x_values, x_tick_notes or ()):
            x = self.x(value)
            # ~6 px a character: a note centred on the last tick would run past the edge
            anchor = "end" if x + 3.2 * len(note) > self.width else "middle"
            parts.append(f'<text class="tick calendar" x="{x}" y="{self.y0 + 16 + CALENDAR_ROW}" '
                         f'text-anchor="{anchor}">{html.escape(note)}</text>')
        parts.append(f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x1}" y2="{self.y0}"/>'
                     f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x0}" y2="{self.y1}"/>')
        parts.append(f'<text class="label" x="{(self.x0 + self.x1) / 2}" y="{self.height - 6}" '
                     f'text-anchor="middle">{html.escape(x_label)}</text>')
        parts.append(f'<text class="label" transform="translate(14,{(self.y0 + self.y1) / 2}) rotate(-90)" '
                     f'text-anchor="middle">{html.escape(y_label)}</text>')
        return parts

    def svg(self, css_class: str, parts: list[str], title: str) -> str:
        return (f'<svg class="plot {css_class}" viewBox="0 0 {self.width} {self.height}" role="img" '
                f'aria-label="{html.escape(title)}" xmlns="http://www.w3.org/2000/svg">'
                + "".join(parts) + "</svg>")


def _legend(items: list[tuple[str, str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{color}"></i>{html.escape(label)}{html.escape(extra)}</span>'
        for label, color, extra in items) + "</div>"


def _time_plot(x_max: float, y_max: float, calendar_from: float | None) -> tuple["_Plot", str, list, list, list]:
    """A plot over a run's time: (plot, axis title, ticks, their labels, their calendar
    notes or None), taller by a row when the ticks also say the calendar."""
    title, values, labels = time_axis(x_max if x_max > 0 else 1.0)
    notes = calendar_notes(values, calendar_from)
    if notes is None:
        return _Plot(x_max, y_max), title, values, labels, None
    plot = _Plot(x_max, y_max, height=HEIGHT + CALENDAR_ROW, bottom=MARGIN_BOTTOM + CALENDAR_ROW)
    return plot, f"{title}; below it, the lab's calendar (UTC)", values, labels, notes


def states_svg(changes: list[tuple[float, str, str]], phones: int, end_t: float,
               run_series: dict | None | bool = None, calendar_from: float | None = None) -> str:
    """From the report's time series when it has one (a long run's per-phone event lists
    may be cut short), else from the phones' state changes."""
    if run_series:
        bucket = run_series["bucket_s"]
        series = run_series["states"]
        times = [index * bucket for index in range(len(series["off"]))] or [0.0]
    else:
        times, series = state_series(changes, phones, end_t)
    plot, title, values, labels, notes = _time_plot(times[-1], phones, calendar_from)
    parts = plot.axes(title, "phones", values, counts=True, x_tick_labels=labels, x_tick_notes=notes)
    lower = [0] * len(times)
    shown = []
    for state in STACK_ORDER:
        values = series[state]
        if not any(values):
            continue
        upper = [a + b for a, b in zip(lower, values)]
        top = " ".join(f"{plot.x(t)},{plot.y(v)}" for t, v in zip(times, upper))
        bottom = " ".join(f"{plot.x(t)},{plot.y(v)}" for t, v in zip(reversed(times), reversed(lower)))
        parts.append(f'<path class="area" data-state="{state}" data-points="{len(times)}" '
                     f'fill="{STATE_COLORS[state]}" d="M{top} L{bottom} Z"><title>{state}</title></path>')
        lower = upper
        shown.append((state, STATE_COLORS[state], f" (max {max(values)}, end {values[-1]})"))
    return plot.svg("states", parts, "phones by state over time") + _legend(shown)


def histogram_svg(name: str, values) -> str:
    """``values``: a list, or an observe.latencies.Latencies (a long run's, counted by value)."""
    items = counted_items(values)
    total = sum(times for _, times in items)
    start, width, counts = _bins_of(items)
    plot = _Plot(start + width * len(counts), max(counts), width=440, height=220, x_min=start)
    parts = plot.axes("seconds", "count", counts=True)
    for index, count in enumerate(counts):
        if not count:
            continue
        low, high = start + index * width, start + (index + 1) * width
        x, x_next = plot.x(low), plot.x(high)
        y = plot.y(count)
        parts.append(f'<rect class="bar" x="{x}" y="{y}" width="{max(0.5, round(x_next - x - 1, 1))}" '
                     f'height="{round(plot.y0 - y, 1)}"><title>{_fmt(low)}–{_fmt(high)} s: {count}</title></rect>')
    for label, p, color in (("p50", 50, "#2b6cb0"), ("p95", 95, "#dd6b20"), ("p99", 99, "#c53030")):
        value = counted_percentile(items, total, p)
        if value is None:
            continue
        x = plot.x(value)
        parts.append(f'<line class="marker" data-percentile="{label}" stroke="{color}" x1="{x}" y1="{plot.y1}" '
                     f'x2="{x}" y2="{plot.y0}"><title>{label} {_seconds(value)}</title></line>')
        offset = {"p50": 12, "p95": 26, "p99": 40}[label]
        # Labels go left of their line in the right half, so none runs off the plot.
        left = x > (plot.x0 + plot.x1) / 2
        parts.append(f'<text class="marker-label" fill="{color}" x="{x - 3 if left else x + 3}" '
                     f'y="{plot.y1 + offset}" text-anchor="{"end" if left else "start"}">{label} '
                     f'{_seconds(value)}</text>')
    summary = f"n={total}" if total else "no data"
    return (f'<figure class="histogram"><figcaption>{html.escape(name)} <small>{summary}</small></figcaption>'
            + plot.svg("histogram", parts, f"{name} latency histogram") + "</figure>")


def rates_svg(rows: list[tuple] | None, end_t: float, run_series: dict | None = None,
              calendar_from: float | None = None) -> str:
    if run_series is not None:  # counted during the run, per bucket of the series
        width = run_series["bucket_s"]
        rates = {service if service in SERVICE_COLORS else "other": [n / width for n in counts]
                 for service, counts in run_series["requests"].items()}
        totals = {service: sum(counts) for service, counts in run_series["requests"].items()}
    elif rows is None:
        return '<p class="note">No event log for this run.</p>'
    else:
        times_by_service = request_times(rows)
        width, rates = rate_series(times_by_service, end_t) if times_by_service else (1.0, {})
        totals = {service: len(times) for service, times in times_by_service.items()}
    if not rates:
        return '<p class="note">No requests were recorded.</p>'
    count = len(next(iter(rates.values())))
    plot, title, values, labels, notes = _time_plot(width * count, max(max(values) for values in rates.values()),
                                                    calendar_from)
    parts = plot.axes(f"{title} (buckets of {format_duration(width)})", "requests per second", values,
                      x_tick_labels=labels, x_tick_notes=notes)
    legend = []
    for service in sorted(rates, key=list(SERVICE_COLORS).index):
        values = rates[service]
        color = SERVICE_COLORS[service]
        points = " ".join(f"{plot.x((i + 0.5) * width)},{plot.y(v)}" for i, v in enumerate(values))
        parts.append(f'<polyline class="rate" data-service="{service}" data-points="{len(values)}" fill="none" '
                     f'stroke="{color}" stroke-width="2" points="{points}"><title>{service}</title></polyline>')
        legend.append((service, color, f" ({totals.get(service, 0)} requests, peak {_fmt(max(values))}/s)"))
    return plot.svg("rates", parts, "requests per second per service") + _legend(legend)


# --- the page -------------------------------------------------------------------------


def table_data(phones, budget: int = TABLE_EVENT_BUDGET) -> tuple[list, str]:
    """The phone table's rows for the page's script, and a note when something was left out.

    Each row: [mac, fleet, vendor, model, state, reboots, powered on, ready at, failure,
    events] with events [t, state index, is_step, detail]."""
    table = PhoneTable(budget)
    for phone in phones:
        table.add(phone)
    return table.finish()


class PhoneTable:
    """``table_data`` in one pass over the phones: a run's phone entries are made as they
    are read, and making them again for the table was a third of writing a 10,000-phone
    report. Steps stay in the rows while every phone's events so far fit the budget; at
    the first phone that makes them not fit, the rows so far lose their steps and later
    rows are made without (as when every phone was counted first: the sums of the rows
    so far fit, with steps and so without). Then rows stop at the first that does not
    fit; the phones after it are only counted."""

    def __init__(self, budget: int = TABLE_EVENT_BUDGET):
        self.budget = budget
        self.total = 0  # every phone's events so far, steps included
        self.phones = 0
        self.rows: list = []
        self.used = 0  # the events in the rows, once steps are left out
        self.shown: int | None = None  # the rows shown, once one did not fit
        self._state_index = {state: i for i, state in enumerate(STATES)}

    @property
    def with_steps(self) -> bool:
        return self.total <= self.budget

    def add(self, phone: dict) -> None:
        self.phones += 1
        events = phone["events"]
        was_with_steps = self.with_steps
        self.total += len(events)
        if self.shown is not None:
            return
        with_steps = self.with_steps
        if was_with_steps and not with_steps:
            for row in self.rows:
                row[9] = [event for event in row[9] if not event[2]]
            self.used = sum(len(row[9]) for row in self.rows)
        index = self._state_index
        timeline = [[event["t"], index.get(event["state"], 0), int(event["kind"] != "state"), event["detail"]]
                    for event in events if with_steps or event["kind"] == "state"]
        if not with_steps:
            if self.used + len(timeline) > self.budget and self.rows:
                self.shown = len(self.rows)
                return
            self.used += len(timeline)
        self.rows.append([phone["mac"], phone["fleet"], phone["vendor"], phone["model"], phone["state"],
                          phone["reboots"], phone["powered_on_at_s"], phone["ready_at_s"], phone["failure"] or "",
                          timeline, self._left_out(phone)])

    def _left_out(self, phone: dict) -> list | None:
        """[from, to, how many, the state at ``to``] of the events a long run left out of the
        phone's list (report: ``events_dropped_between``), which the timeline draws as such:
        not as the state before them, for days."""
        between = phone.get("events_dropped_between")
        if not between or between[1] <= between[0]:
            return None
        after = next((event for event in phone["events"] if event["t"] >= between[1]), None)
        if after is None:
            return None
        return [between[0], between[1], phone["events_dropped"], self._state_index.get(after["state"], 0)]

    def finish(self) -> tuple[list, str]:
        note = ""
        if self.shown is not None:
            note = (f"The table shows the first {self.shown} of {self.phones} phones; "
                    f"report.json and events.jsonl have every one.")
        if not self.with_steps:
            note = ("Steps inside states are left out of the timelines to keep the page small; "
                    "events.jsonl has them. " + note).strip()
        return self.rows, note


def _embed_json(value) -> str:
    # Inside <script> only "</script" and "<!--" matter; escaping every "<" covers both.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")


def _summary_html(report: dict) -> str:
    summary = report["summary"]
    status = "PASSED" if report["passed"] and report["complete"] else "FAILED"
    badges = [f'<span class="badge {status.lower()}">{status}</span>']
    if not report["complete"]:
        badges.append(f'<span class="badge incomplete">INCOMPLETE: {html.escape(report["end_reason"])}</span>')
    if not report["expectations"]:  # as the terminal says it: a PASSED that judged nothing
        badges.append('<span class="badge unjudged">no expectations: nothing was judged</span>')
    scenario = report["scenario"]
    simulated = report.get("simulated")
    if simulated:  # a virtual run: what it simulated first, its wall time after
        when = [("simulated", f"{format_duration(simulated['duration_s'])}, {_calendar_text(simulated['from'])} "
                              f"to {_calendar_text(simulated['to'])}"),
                ("wall time", f"{report['duration_s']:.1f} s"), ("run at", report["started"] or "–")]
    else:
        when = [("duration", f"{report['duration_s']:.1f} s"), ("started", report["started"] or "–")]
    facts = [
        ("phones", str(summary["phones"])),
        *when,
        ("end", report["end_reason"]),
        ("seed", str(scenario["seed"])),
        ("reboots", str(summary["reboots_total"])),
        ("time to ready p50 / p95 / p99",
         " / ".join(_seconds(summary["time_to_ready_s"][k]) for k in ("p50", "p95", "p99"))),
    ]
    states = " ".join(f'<span class="chip"><i style="background:{STATE_COLORS[s]}"></i>{s} {n}</span>'
                      for s, n in summary["by_state"].items() if n)
    expectations = "".join(
        f'<tr class="{"pass" if e["passed"] else "fail"}"><td>{"PASS" if e["passed"] else "FAIL"}</td>'
        f'<td>{html.escape(e["name"])}</td><td><code>{html.escape(e["check"])}</code></td>'
        f'<td>{html.escape(json.dumps(e["observed"]))}</td><td>{html.escape(e["detail"] or "")}</td></tr>'
        for e in report["expectations"])
    problems = "".join(f"<li>{html.escape(problem_line(problem))}</li>" for problem in summary.get("problems", []))
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in report.get("notes", []))
    timeline = "".join(
        f'<tr class="{"fail" if str(r["outcome"]).startswith("error: ") else ""}"><td>{clock_text(r["t"])}</td>'
        f'<td>{html.escape(r["entry"])}</td><td>{html.escape(r["action"])}</td><td>{html.escape(r["outcome"])}</td></tr>'
        for r in report.get("timeline", []))
    timeline += "".join(f'<tr class="fail"><td>never</td><td>{html.escape(e["entry"])}</td><td></td>'
                        f'<td>{html.escape(e["why"])}</td></tr>' for e in report.get("timeline_not_run", []))
    servers = "".join(_server_row(server, stats) for server, stats in summary.get("servers", {}).items())
    return (
        f'<header><h1>{html.escape(scenario["name"])} {"".join(badges)}</h1>'
        f'<p class="file">{html.escape(scenario["file"])}</p>'
        '<dl class="facts">' + "".join(f"<div><dt>{k}</dt><dd>{html.escape(v)}</dd></div>" for k, v in facts)
        + f'</dl><p class="states">{states}</p>'
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + (f'<p>Notes before the run:</p><ul class="notes">{notes}</ul>' if notes else "")
        + "</header>"
        + ('<section><h2>Expectations</h2><table class="expectations"><thead><tr><th></th><th>name</th>'
           '<th>check</th><th>observed</th><th>detail</th></tr></thead><tbody>' + expectations + "</tbody></table>"
           "</section>" if expectations else "")
        + ('<section><h2>Timeline</h2><table class="actions"><thead><tr><th>at</th><th>entry</th>'
           '<th>action</th><th>outcome</th></tr></thead><tbody>' + timeline + "</tbody></table></section>"
           if timeline else "")
        + ('<section><h2>Servers</h2><table class="servers"><thead><tr><th>server</th><th>requests</th>'
           '<th>errors</th><th>outcomes other than ok</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr></thead>'
           '<tbody>' + servers + "</tbody></table></section>" if servers else "")
    )


def _server_row(server: str, stats: dict) -> str:
    """One server the phones talked to, as the terminal's summary line says it: its
    requests, errors by outcome (``error HTTP 503``, ``dns`` …) and latency."""
    outcomes = ", ".join(f"{outcome} {count}" for outcome, count in stats["by_status"].items() if outcome != "ok")
    latency = stats["latency_s"]
    return (f'<tr class="{"fail" if stats["errors"] else ""}" data-server="{html.escape(server)}">'
            f"<td>{html.escape(server)}</td><td>{stats['requests']}</td><td>{stats['errors']}</td>"
            f"<td>{html.escape(outcomes)}</td>"
            + "".join(f"<td>{_seconds(latency[key])}</td>" for key in ("p50", "p95", "p99", "max")) + "</tr>")


def _calendar_text(moment: str) -> str:
    """``2026-01-04T00:00:00+00:00`` as ``Sun 2026-01-04 00:00 UTC`` (a week reads by its days)."""
    try:
        parsed = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        return str(moment)
    return parsed.astimezone(timezone.utc).strftime("%a %Y-%m-%d %H:%M UTC")


def build_html(report: dict, *, stage_latencies: dict[str, list[float]] | None = None,
               rows: list[tuple] | None = None) -> str:
    return "\n".join(html_pieces(report, stage_latencies=stage_latencies, rows=rows)) + "\n"


class PageFacts:
    """What the page reads of every phone, gathered a phone at a time (``add``), so the
    phones are gone through once: by the page itself, or while report.json is written
    (``observe.report.write_report``'s ``each_phone``; a run's phone entries are made as
    they are read, and making them again for the page was a third of writing a
    10,000-phone report)."""

    def __init__(self, report: dict):
        self.report = report  # the one they are facts of
        simulated = report.get("simulated")  # a virtual run's axes end where its simulated time did
        self.end_t = (simulated["duration_s"] if simulated else report.get("duration_s")) or 0.0
        self.ready: list[float] = []
        self.changes: list[tuple[float, str, str]] = []
        self.cut = False
        self.table = PhoneTable()

    @property
    def phones(self) -> int:
        return self.table.phones

    def add(self, phone: dict) -> None:
        self.table.add(phone)
        events = phone["events"]
        if events:
            self.end_t = max(self.end_t, events[-1]["t"])
            self.changes += state_changes(phone)
        if phone["ready_at_s"] is not None and phone["powered_on_at_s"] is not None:
            self.ready.append(phone["ready_at_s"] - phone["powered_on_at_s"])
        # Phones' event lists cut short (a long run): their states over time come from the
        # series counted during the run instead (coarser: one sample a bucket).
        self.cut = self.cut or bool(phone.get("events_dropped"))


def html_pieces(report: dict, *, stage_latencies: dict[str, list[float]] | None = None,
                rows: list[tuple] | None = None, facts: PageFacts | None = None) -> list[str]:
    """The page in pieces (written one after the other, never joined into one string).
    ``facts``: gathered from every phone of this report already (else, or if they are
    another report's or were not gathered to the end, here)."""
    phones = report["phones"]  # a run's are made as they are read (observe.report.PhoneEntries): one pass
    if facts is None or facts.report is not report or facts.phones != len(phones):
        facts = PageFacts(report)
        for phone in phones:
            facts.add(phone)
    end_t, ready, changes, cut = facts.end_t, facts.ready, facts.changes, facts.cut
    histograms = [histogram_svg("power on → ready", ready)]
    for stage, values in sorted((stage_latencies or {}).items()):
        histograms.append(histogram_svg(f"stage {stage}", values))
    table_rows, table_note = facts.table.finish()
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>labsim: {html.escape(report['scenario']['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        _summary_html(report),
        '<section><h2>Phones by state over time</h2>',
        states_svg(changes, len(phones), end_t, cut and report.get("series"), calendar_from_report(report)),
        "</section>",
        '<section><h2>Latency</h2><div class="histograms">', *histograms, "</div></section>",
        '<section><h2>Requests per second</h2>',
        rates_svg(rows, end_t, report.get("series") if rows is None else None, calendar_from_report(report)),
        "</section>",
        '<section><h2>Phones</h2>',
        f'<p class="note">{html.escape(table_note)}</p>' if table_note else "",
        '<div class="controls"><input id="filter" type="search" placeholder="filter: MAC, fleet, model, failure …">'
        '<select id="state"><option value="">every state</option>'
        + "".join(f'<option value="{s}">{s}</option>' for s in STATES)
        + '</select> <button id="prev">‹ prev</button> <span id="page"></span> <button id="next">next ›</button>'
        '</div>',
        '<table class="phones"><thead><tr><th>MAC</th><th>fleet</th><th>model</th><th>state</th><th>reboots</th>'
        '<th>ready after</th><th>timeline</th><th>failure</th></tr></thead><tbody id="phone-rows"></tbody></table>',
        '<noscript><p class="note">The phone table needs JavaScript; report.json has every phone.</p></noscript>',
        "</section>",
        f'<script id="phone-data" type="application/json">{_embed_json(table_rows)}</script>',
        f'<script>const STATES={_embed_json(list(STATES))}, COLORS={_embed_json(STATE_COLORS)}, '
        f'END_T={end_t!r}, PAGE_SIZE={PAGE_SIZE}, BRIEF_SHARE={BRIEF_SHARE};\n{_SCRIPT}</script>',
        "</body></html>",
    ]
    return page


def write_html_report(report: dict, report_dir: str, *, stage_latencies: dict[str, list[float]] | None = None,
                      rows: list[tuple] | None = None, facts: PageFacts | None = None) -> str:
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "report.html")
    temporary = path + ".tmp"
    pieces = html_pieces(report, stage_latencies=stage_latencies, rows=rows, facts=facts)
    with open(temporary, "w", encoding="utf-8") as handle:
        for piece in pieces:
            handle.write(piece)
            handle.write("\n")
    os.replace(temporary, path)
    return path


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;
color:#1f2933;background:#fff}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e4e7eb;padding-bottom:4px}
.file{color:#52606d;margin:0 0 8px;font-family:ui-monospace,monospace;font-size:12px}
.badge{font-size:12px;border-radius:4px;padding:2px 8px;margin-left:8px;vertical-align:middle;color:#fff}
.badge.passed{background:#2f9e44}.badge.failed{background:#d9480f}.badge.incomplete{background:#7048e8}
.badge.unjudged{background:#868e96}
.facts{display:flex;flex-wrap:wrap;gap:6px 24px;margin:8px 0}.facts div{min-width:90px}
.facts dt{font-size:11px;color:#7b8794;text-transform:uppercase}.facts dd{margin:0;font-weight:600}
.chip,.legend span{display:inline-block;margin-right:14px;font-size:13px}
.chip i,.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
svg.plot{width:100%;height:auto;display:block}
.grid{stroke:#eef0f3}.axis{stroke:#9aa5b1}.tick{font-size:11px;fill:#616e7c}.tick.calendar{fill:#2b6cb0}.label{font-size:12px;fill:#3e4c59}
.area{stroke:none;opacity:.92}.bar{fill:#5b8def}.marker{stroke-width:1.5;stroke-dasharray:4 3}
.marker-label{font-size:11px;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
.histograms{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
figure{margin:0}figcaption{font-weight:600;font-size:13px}figcaption small{color:#7b8794;font-weight:400}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3}
th{font-size:12px;color:#52606d;font-weight:600}
.expectations tr.fail td:first-child{color:#d9480f;font-weight:700}.actions tr.fail td{color:#d9480f}
.servers tr.fail td:nth-child(3),.servers tr.fail td:nth-child(4){color:#d9480f}.expectations tr.pass td:first-child{color:#2f9e44;font-weight:700}
.phones td.mac{font-family:ui-monospace,monospace;white-space:nowrap}.phones td.failure{color:#c92a2a;font-size:12px}
.tl{position:relative;height:12px;min-width:220px;background:#f5f7fa;border-radius:2px;cursor:pointer}
.tl b{position:absolute;top:0;bottom:0}.tl b.tick{width:1px;bottom:auto;height:5px;z-index:1}
.tl b.left-out{background:repeating-linear-gradient(135deg,#d9dee4 0 2px,#fff 2px 5px)}.events tr.left-out td{color:#7b8794}
.events{font-size:12px;color:#3e4c59;margin:4px 0}.events td{border:0;padding:1px 8px}
.controls{margin:8px 0;display:flex;gap:8px;align-items:center}.controls input{flex:1;padding:4px 8px}
.note{color:#7b8794;font-size:13px}
"""

# The phone table: filter, page, draw each row's timeline as coloured spans, and show a
# phone's events when its timeline is clicked. Written for this page; no library.
_SCRIPT = r"""
(function () {
  const rows = JSON.parse(document.getElementById("phone-data").textContent);
  const body = document.getElementById("phone-rows");
  const filter = document.getElementById("filter"), stateSel = document.getElementById("state");
  const pageLabel = document.getElementById("page");
  let shown = rows, page = 0;
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const secs = (v) => v === null ? "–" : (v < 1 ? (v * 1000).toPrecision(3) + " ms" : v.toPrecision(3) + " s");
  // Each state as wide as its share of the run, so the bar's colours are the phone's time.
  // A state too brief to see (a week's hourly 2 ms passes) is also marked by a thin tick
  // along the top, over the state around it: widened instead, 168 passes painted half
  // of a phone's week orange while it was ready all but a second of it.
  // A long run's report keeps each phone's first and last events: the stretch between
  // (gap: [from, to, how many, the state at to]) is drawn as left out, hatched.
  const LEFT_OUT = -1;
  const leftOutText = (gap) => gap[2].toLocaleString("en") + " events left out of the report, " +
    gap[0].toFixed(3) + " s to " + gap[1].toFixed(3) + " s: events.jsonl has them (labsim story REPORT_DIR MAC)";
  function timeline(events, gap) {
    const spans = [], ticks = [];
    let states = events.filter((e) => !e[2]);
    if (gap) {
      states = states.filter((e) => e[0] <= gap[0]).concat(
        [[gap[0], LEFT_OUT, 0, ""], [gap[1], gap[3], 0, "(the state after the events left out)"]],
        states.filter((e) => e[0] > gap[1]));
    }
    for (let i = 0; i < states.length; i++) {
      const start = states[i][0], end = i + 1 < states.length ? states[i + 1][0] : END_T;
      const left = (100 * start / END_T).toFixed(3), width = 100 * (end - start) / END_T;
      if (states[i][1] === LEFT_OUT) {
        spans.push('<b class="left-out" style="left:' + left + '%;width:' + width.toFixed(4) + '%" title="' +
                   esc(leftOutText(gap)) + '"></b>');
        continue;
      }
      const name = STATES[states[i][1]];
      const title = '" title="' + esc(name + " at " + start.toFixed(3) + " s " + states[i][3]) + '"></b>';
      spans.push('<b style="left:' + left + '%;width:' + width.toFixed(4) + '%;background:' + COLORS[name] + title);
      if (width < BRIEF_SHARE && name !== "ready") {
        ticks.push('<b class="tick" style="left:' + left + '%;background:' + COLORS[name] + title);
      }
    }
    return spans.join("") + ticks.join("");
  }
  function eventsTable(events, gap) {
    const row = (e) => "<tr><td>" + e[0].toFixed(4) + "</td><td>" + (e[2] ? "step" : "state") + "</td><td>" +
      STATES[e[1]] + "</td><td>" + esc(e[3]) + "</td></tr>";
    const rows = events.map((e, i) => (gap && i > 0 && events[i - 1][0] <= gap[0] && e[0] >= gap[1] ?
      '<tr class="left-out"><td colspan="4">… ' + esc(leftOutText(gap)) + " …</td></tr>" : "") + row(e));
    return '<table class="events">' + rows.join("") + "</table>";
  }
  function draw() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const slice = shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    body.innerHTML = slice.map((r, i) =>
      '<tr class="phone-row"><td class="mac">' + esc(r[0]) + "</td><td>" + esc(r[1]) + "</td><td>" +
      esc(r[2] + " " + r[3]) + "</td><td>" + esc(r[4]) + "</td><td>" + r[5] + "</td><td>" +
      secs(r[7] === null || r[6] === null ? null : r[7] - r[6]) + '</td><td><div class="tl" data-i="' + i + '">' +
      timeline(r[9], r[10]) + '</div><div class="more"></div></td><td class="failure">' + esc(r[8]) + "</td></tr>").join("");
    body.querySelectorAll(".tl").forEach((el) => el.addEventListener("click", () => {
      const more = el.nextElementSibling;
      const r = slice[+el.dataset.i];
      more.innerHTML = more.innerHTML ? "" : eventsTable(r[9], r[10]);
    }));
    pageLabel.textContent = "page " + (page + 1) + " of " + pages + " (" + shown.length + " phones)";
  }
  function apply() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean), state = stateSel.value;
    shown = rows.filter((r) => (!state || r[4] === state) &&
      words.every((w) => (r[0] + " " + r[1] + " " + r[2] + " " + r[3] + " " + r[8]).toLowerCase().includes(w)));
    page = 0;
    draw();
  }
  filter.addEventListener("input", apply);
  stateSel.addEventListener("change", apply);
  document.getElementById("prev").addEventListener("click", () => { page = Math.max(0, page - 1); draw(); });
  document.getElementById("next").addEventListener("click", () => { page++; draw(); });
  draw();
})();
"""
