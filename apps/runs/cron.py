"""The next fire times of a cron expression in a time zone (what the schedule dialog previews)."""

import zoneinfo
from datetime import datetime

from croniter import croniter
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.errors import field_error
from apps.environments.models import validate_cron, validate_timezone

PREVIEW_COUNT = 5


def next_fire_times(cron: str, timezone_name: str, *, count: int = PREVIEW_COUNT, now=None) -> list[datetime]:
    """The next `count` ticks after `now`, as aware datetimes in the schedule's own time zone (so a
    daylight-saving change shows as people there see it). A bad expression or zone is a 400 naming it."""
    for field, value, validator in (("timezone", timezone_name, validate_timezone), ("cron", cron, validate_cron)):
        try:
            validator(value)
        except ValidationError as exc:
            raise field_error(field, exc.messages[0]) from None
    zone = zoneinfo.ZoneInfo(timezone_name)
    ticks = croniter(cron, (now or timezone.now()).astimezone(zone))
    return [ticks.get_next(datetime) for _ in range(count)]
