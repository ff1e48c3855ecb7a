import pytest

from labsim.scenario.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800),
                                           ("8d12h", 734400), ("1h30m", 5400), (" 2 h ", 7200), (45, 45),
                                           ("0.5d", 43200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7w", "7", "d", "12h8d", "1h1h", "0s", -5, True, "7 days"])
def test_not_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format():
    assert [format_duration(s) for s in (604800, 3600, 90, 1.5)] == ["7d", "1h", "90s", "1.5s"]
