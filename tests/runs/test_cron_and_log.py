"""The schedule dialog's fire-time preview (in the schedule's own time zone, across a daylight-saving
change) and the run log's level filter."""

from datetime import UTC, datetime

import pytest

from apps.core.errors import ValidationFailed
from apps.runs.cron import next_fire_times
from apps.runs.run_log import RunLog


def test_next_fire_times_stay_at_local_time_across_a_daylight_saving_change():
    now = datetime(2026, 10, 23, 12, 0, tzinfo=UTC)  # Paris leaves summer time on 25 October
    ticks = next_fire_times("0 9 * * *", "Europe/Paris", now=now)
    assert [t.strftime("%d %H:%M %Z") for t in ticks] == [
        "24 09:00 CEST",
        "25 09:00 CET",
        "26 09:00 CET",
        "27 09:00 CET",
        "28 09:00 CET",
    ]
    assert [t.utcoffset().total_seconds() / 3600 for t in ticks[:2]] == [2.0, 1.0]


@pytest.mark.parametrize(
    ("cron", "zone", "field"), [("61 * * * *", "UTC", "cron"), ("0 6 * * *", "Mars/Olympus", "timezone")]
)
def test_a_bad_expression_or_zone_is_a_400_naming_it(cron, zone, field):
    with pytest.raises(ValidationFailed) as refused:
        next_fire_times(cron, zone)
    assert list(refused.value.fields) == [field]


def test_the_run_log_keeps_what_the_environment_level_lets_through():
    verbose, terse = [], []
    for lines, level in ((verbose, "DEBUG"), (terse, "INFO")):
        log = RunLog(lines, level)
        log("limits: none", "DEBUG")
        log("orders_src → orders_out")
        log("slow source", "WARNING")
    assert [line.split(maxsplit=2)[1] for line in verbose] == ["DEBUG", "INFO", "WARNING"]
    assert [line.split(maxsplit=2)[1:] for line in terse] == [
        ["INFO", "orders_src → orders_out"],
        ["WARNING", "slow source"],
    ]
    assert RunLog([], None).threshold == RunLog([], "INFO").threshold  # no policy: INFO
