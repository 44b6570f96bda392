"""`manage.py promote`: requests and decisions go through the services (same permissions, rules and
state machine as the API); bad input, refusals and wrong-state transitions exit non-zero with the
reason (CommandError)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.approvals import services
from apps.approvals.management.commands.promote import Command
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState

pytestmark = pytest.mark.django_db


def promote(*args) -> str:
    out = StringIO()
    call_command("promote", *args, stdout=out)
    return out.getvalue()


def request_args(p, *extra):
    return ["--as", "dev", "--pipeline", str(p["pipeline"].pk), "--version", "1", "--from", "development", *extra]


def test_request_a_promotion(promo):
    p = promo
    out = promote(*request_args(p, "--reason", "nightly totals fixed", "--ticket", "OPS-7"))
    request = PromotionRequest.objects.get()
    assert request.requested_by == p["developer"] and request.target == p["staging"]
    assert request.reason == "nightly totals fixed" and request.ticket == "OPS-7"
    assert f"Promotion request #{request.pk}: orders v1 development → staging (pending)" in out
    assert request.plan_hash in out and "rule 'staging review': 0/1 approvals (not met)" in out


def test_request_by_slug_with_explicit_target(promo):
    out = promote(
        "--as", "dev", "--pipeline", "sales/orders", "--version", "1", "--from", "development", "--to", "staging"
    )
    assert "(pending)" in out and PromotionRequest.objects.count() == 1


def test_idempotency_key_makes_a_retry_harmless(promo):
    p = promo
    first = promote(*request_args(p, "--idempotency-key", "cron-2026-11-29"))
    again = promote(*request_args(p, "--idempotency-key", "cron-2026-11-29"))
    request = PromotionRequest.objects.get()
    assert f"#{request.pk}" in first and f"Already requested with this idempotency key: #{request.pk}." in again


def test_approve_and_reject(promo):
    p = promo
    request = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"]
    )[0]
    out = promote("--approve", str(request.pk), "--as", "stager", "--comment", "checked the diff")
    request.refresh_from_db()
    assert request.state == PromotionState.APPROVED
    assert "(approved)" in out and "1/1 approvals by stager (met)" in out
    assert ApprovalDecision.objects.get().comment == "checked the diff"
    # the state machine refuses a second decision, naming the state
    with pytest.raises(CommandError, match="it is approved"):
        promote("--approve", str(request.pk), "--as", "stager")
    with pytest.raises(CommandError, match="it is approved"):
        promote("--reject", str(request.pk), "--as", "stager", "--comment", "too late")


def test_reject_needs_a_comment(promo):
    p = promo
    request = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"]
    )[0]
    with pytest.raises(CommandError, match="comment"):
        promote("--reject", str(request.pk), "--as", "stager")
    out = promote("--reject", str(request.pk), "--as", "stager", "--comment", "wrong table")
    request.refresh_from_db()
    assert request.state == PromotionState.REJECTED and "(rejected)" in out


def test_a_stale_plan_hash_is_refused(promo):
    p = promo
    request = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"]
    )[0]
    with pytest.raises(CommandError, match="plan changed"):
        promote("--approve", str(request.pk), "--as", "stager", "--plan-hash", "sha256:old")
    assert not ApprovalDecision.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as", "ghost", "--pipeline", "1", "--version", "1", "--from", "development"], "No active user 'ghost'"),
        (["--as", "dev", "--version", "1", "--from", "development"], "give --pipeline"),
        (["--as", "dev", "--pipeline", "sales/orders", "--version", "1"], "give --from"),
        (["--as", "dev", "--pipeline", "nope/none", "--version", "1", "--from", "development"], "No pipeline"),
        (["--as", "dev", "--pipeline", "orders", "--version", "1", "--from", "development"], "project-slug"),
        (["--as", "dev", "--pipeline", "sales/orders", "--version", "9", "--from", "development"], "no version 9"),
        (["--as", "dev", "--pipeline", "sales/orders", "--version", "x", "--from", "development"], "whole number"),
        (["--as", "dev", "--pipeline", "sales/orders", "--version", "1", "--from", "moon"], "--from: no environment"),
        (
            [
                "--as",
                "dev",
                "--pipeline",
                "sales/orders",
                "--version",
                "1",
                "--from",
                "development",
                "--to",
                "production",
            ],
            "environment path",
        ),
        (["--as", "dev", "--pipeline", "sales/orders", "--version", "1", "--from", "staging"], "neither deployed"),
        (
            ["--as", "stager", "--pipeline", "sales/orders", "--version", "1", "--from", "development"],
            "request_promotion",
        ),
        (
            ["--as", "dev", "--pipeline", "sales/orders", "--version", "1", "--from", "development", "--comment", "x"],
            "--comment and --plan-hash",
        ),
        (["--as", "dev", "--approve", "999999"], "No such promotion request"),
        (["--as", "dev", "--approve", "1", "--pipeline", "sales/orders"], "--pipeline: not used"),
        (["--as", "dev", "--approve", "1", "--reject", "1"], "not allowed with argument"),
    ],
)
def test_bad_input_exits_with_the_reason(promo, args, message):
    with pytest.raises(CommandError, match=message):
        promote(*args)
    assert PromotionRequest.objects.count() == 0 and ApprovalDecision.objects.count() == 0


def test_deciding_needs_the_permission(promo):
    p = promo
    request = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"]
    )[0]
    with pytest.raises(CommandError, match="your own request"):
        promote("--approve", str(request.pk), "--as", "dev")
    with pytest.raises(CommandError, match="No such promotion request"):
        promote("--approve", str(request.pk), "--as", "prodder")  # may not see staging
    request.refresh_from_db()
    assert request.state == PromotionState.PENDING and not ApprovalDecision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_exit_status_is_non_zero_from_the_command_line(capsys):
    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "promote", "--as", "ghost", "--approve", "1"])
    assert exited.value.code == 1
    assert "No active user 'ghost'" in capsys.readouterr().err
