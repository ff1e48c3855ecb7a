"""A phone's story under --ui keeps its exchanges after events.jsonl has them: the
whole fleet's ``recent`` rows forget a phone within seconds of a big storm, the
per-phone ring (``EventLog.keep_for_story``) does not."""

from __future__ import annotations

from labsim.observe.events_log import EventLog

A, B = "00:15:65:00:00:01", "00:15:65:00:00:02"


def dhcp_row(t: float, mac: str) -> tuple:
    return (t, mac, "dhcp", "out", 1, 0x1234, "0.0.0.0")


def fetch_row(t: float, mac: str, name: str) -> tuple:
    return (t, mac, "fetch", f"http://127.0.0.1/{name}", "ok", 10, 0.001, "", "0" * 32)


def storm(log: EventLog) -> None:
    """Phone A provisions, the stream writes it, then phone B logs a great deal."""
    log.rows += [dhcp_row(1.0, A), fetch_row(1.1, A, "a.cfg"), (1.2, A, "state", "ready", "")]
    log.take()
    for n in range(500):
        log.rows.append(dhcp_row(2.0 + n / 1000, B))
        if n % 50 == 0:
            log.take()


def test_without_the_ring_a_busy_fleet_pushes_a_phone_out_of_recent_rows():
    log = EventLog(recent=100)
    storm(log)
    assert log.phone_rows(A) == []


def test_the_ring_keeps_each_phones_last_exchanges():
    log = EventLog(recent=100)
    log.keep_for_story(rows_per_phone=4)
    storm(log)
    assert log.phone_rows(A) == [dhcp_row(1.0, A), fetch_row(1.1, A, "a.cfg")]  # not its state row
    log.rows.append(fetch_row(9.0, A, "b.cfg"))  # recorded, not written yet: there too
    assert log.phone_rows(A)[-1] == fetch_row(9.0, A, "b.cfg")
    rows_b = log.phone_rows(B)
    assert len(rows_b) == 4 + 49 and rows_b[0] == dhcp_row(2.0 + 447 / 1000, B)  # 4 kept + 49 not written yet
