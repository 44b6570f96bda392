"""The promotion world of tests/approvals (a pipeline, stages, rules and approvers) for insights."""

from tests.approvals.conftest import prod_approver2, promo  # noqa: F401
from tests.runs.conftest import run_setup  # noqa: F401
