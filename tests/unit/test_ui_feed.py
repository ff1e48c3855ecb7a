"""The dashboard's change feed: coalescing, a slow page's bounded memory, reconnects."""

import json

from labsim.phones.phone import STATES
from labsim.ui.feed import ChangeFeed

CODE = {state: index for index, state in enumerate(STATES)}


def phones(count):
    return [{"mac": f"00:15:65:00:{i // 256:02x}:{i % 256:02x}", "vendor": "yealink",
             "model": "T46S" if i % 2 else "T54S", "fleet": "desk"} for i in range(count)]


def events(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_phone_that_changed_many_times_between_flushes_is_sent_once_with_its_latest_state():
    feed = ChangeFeed(phones(3))
    for state in ("booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning", "ready"):
        feed.phone_changed(1, state)
    feed.phone_changed(2, "booting")
    [(name, frame)] = events(feed.flush(0.25))
    assert name == "changes"
    assert frame["c"] == [1, CODE["ready"], 2, CODE["booting"]]
    assert frame["counts"][CODE["off"]] == 1 and frame["counts"][CODE["ready"]] == 1
    # Nothing changed since: the next frame carries no phone (only the chart point).
    [(_, frame)] = events(feed.flush(0.5))
    assert frame["c"] == []


def test_a_new_subscriber_starts_from_a_snapshot_of_the_current_state():
    feed = ChangeFeed(phones(4))
    feed.phone_changed(0, "ready")
    feed.phone_changed(3, "failed")
    feed.flush(0.25)
    late = feed.subscribe()  # a page that (re)connects now
    [(name, snapshot)] = events(late.take())
    assert name == "snapshot"
    assert [STATES[ord(c) - 48] for c in snapshot["s"]] == ["ready", "off", "off", "failed"]
    assert snapshot["macs"][3] == "00:15:65:00:00:03"
    assert [snapshot["groups"][g]["model"] for g in snapshot["group"]] == ["T54S", "T46S", "T54S", "T46S"]
    assert snapshot["series"]["t"] == [0.25]
    # Then only changes.
    feed.phone_changed(1, "dhcp")
    feed.flush(0.5)
    [(name, frame)] = events(late.take())
    assert name == "changes" and frame["c"] == [1, CODE["dhcp"]]


def test_a_slow_subscriber_keeps_a_bounded_backlog_and_catches_up_with_one_snapshot():
    feed = ChangeFeed(phones(5000))
    slow = feed.subscribe(max_pending_bytes=64 * 1024)
    slow.take()  # the first snapshot went out; now the page stops reading
    for step in range(2000):
        for index in range(0, 5000, 7):
            feed.phone_changed(index, "dhcp" if step % 2 else "provisioning")
        feed.flush(step * 0.25)
        assert slow.pending_bytes <= 64 * 1024
    assert slow.dropped_frames > 0 and slow.stale
    [(name, snapshot)] = events(slow.take())  # it can read again: the current state, not the backlog
    assert name == "snapshot"
    assert snapshot["s"][0] == chr(48 + CODE["dhcp"])
    assert snapshot["seq"] == feed.seq
    assert slow.take() == b""


def test_an_unsubscribed_page_gets_nothing_more_and_the_series_stays_bounded():
    feed = ChangeFeed(phones(2))
    page = feed.subscribe()
    feed.unsubscribe(page)
    for step in range(5000):
        feed.phone_changed(step % 2, "ready" if step % 3 else "dhcp")
        feed.flush(step * 0.25)
    assert page.pending == [] and len(feed.series_t) <= 1200
    assert feed.series_t[0] == 0.0 and feed.series_t[-1] > 1000  # the whole run, at a coarser step


def test_chart_points_carry_the_requests_so_far_and_a_thinned_series_loses_none():
    # A long lab: requests come in bursts in one frame of each 8, so a rate taken over the
    # last frame before each point of a thinned series would see either none or all of them.
    sent = {"http": 0, "dhcp": 0}
    at_time = {}
    feed = ChangeFeed(phones(1), totals=lambda: dict(sent))
    page = feed.subscribe()
    page.take()
    for step in range(1, 6000):
        if step % 8 == 3:
            sent["http"] += 40
        sent["dhcp"] += step % 2
        t = step * 0.25
        at_time[round(t, 3)] = dict(sent)
        feed.flush(t)
        points = [data for name, data in events(page.take()) if data.get("point")]
        # What the page is told at a point: the totals then (it draws the rates from them).
        assert all(point["totals"] == at_time[point["t"]] for point in points)
    assert len(feed.series_t) <= 1200 and feed.series_t[-1] > 1400
    assert feed.series_t[1] - feed.series_t[0] >= 2  # thinned: a point for each 2 s or more
    # Each point still holds the running totals of its own moment, so the requests between
    # two points are the difference of their totals, however far apart they now are.
    for t, totals in zip(feed.series_t, feed.series_totals):
        assert totals == at_time[t]
    [(name, snapshot)] = events(feed.subscribe().take())
    assert snapshot["series"]["totals"] == feed.series_totals
    assert "rates" not in snapshot["series"]
