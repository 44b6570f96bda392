"""Log records carry the request id, user, organization and run/promotion ids; LOG_FORMAT=json
writes them as one JSON object a line."""

import copy
import io
import json
import logging

import pytest
from django.conf import settings
from django.urls import path

from apps.core.log_context import log_context

logger = logging.getLogger("planasonix.test")


def logging_view(request):
    from django.http import HttpResponse

    assert request.user.is_authenticated  # as every view does before it logs
    logger.warning("inside the view")
    return HttpResponse("ok")


urlpatterns = [path("log-me/", logging_view)]


@pytest.fixture
def json_records():
    """A handler with the project's JSON formatter and log filter, on the root logger."""
    from logging.config import dictConfigClass

    stream = io.StringIO()
    logging_settings = copy.deepcopy(settings.LOGGING)  # dictConfig consumes the dicts it is given
    config = dictConfigClass({**logging_settings, "handlers": {}, "root": {}})
    formatter = config.configure_formatter(logging_settings["formatters"]["json"])
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(config.configure_filter(logging_settings["filters"]["request_id"]))
    root = logging.getLogger()
    root.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_request_lines_carry_request_id_and_user(client, django_user_model, json_records):
    user = django_user_model.objects.create_user("logger", "l@example.com", "pw")
    client.force_login(user)
    client.get("/log-me/", HTTP_X_REQUEST_ID="req-123")
    (record,) = [r for r in json_records() if r["message"] == "inside the view"]
    assert record["request_id"] == "req-123"
    assert record["user"] == "logger"
    assert record["level"] == "WARNING" and record["logger"] == "planasonix.test"


def test_worker_lines_carry_run_and_promotion_ids(json_records):
    with log_context(run_id=41), log_context(promotion_id=7):
        logger.warning("deploying")
    logger.warning("after")
    deploying, after = [r for r in json_records() if r["message"] in ("deploying", "after")]
    assert (deploying["run_id"], deploying["promotion_id"]) == (41, 7)
    assert (after["run_id"], after["promotion_id"], after["request_id"]) == ("-", "-", "-")


def test_log_format_must_be_known(monkeypatch):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import planasonix_env.settings"],
        env={**__import__("os").environ, "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "LOG_FORMAT must be 'plain' or 'json'" in result.stderr
