"""Benchmark of approve → deployed against a no-op Celery round trip on the same broker.

A real worker (a thread of this process, like the workflow tests') consumes the default queue from
the configured broker (a private filesystem broker, or BENCH_CELERY_BROKER_URL=redis://...). The
notifications queue (deliveries: settings.celery_queues) is consumed as in production, by a worker
of its own: a separate `celery worker -Q notifications` process, whose work (e-mail to the
requester and approvers) is neither waited for nor counted in this process's CPU time, so the
measured path is approve → deployed. BENCH_DEPLOY_NOTIFICATIONS=shared has the measured thread
consume both queues instead (as `make run`'s one worker does), the deliveries then running on it
before or after the deployment. Per size of the target's configuration (BENCH_DEPLOY_VARIABLES,
default 2 = demo size and 10000):
  floor    — a no-op task: enqueue, run by the worker, observed done;
  measured — the last approval of a pending request into staging (the API's service call), the
             deployment task enqueued on commit, run by the worker, the request observed deployed;
Each sample promotes a new version (promotion_execute's queries: tests/approvals/test_deploy_cost.py).

Before each sample (not timed) the deliveries so far (the request's e-mails, the previous sample's)
have finished. The floor and the
subject alternate sample by sample (the same load for both), in
BENCH_DEPLOY_ROUNDS rounds of BENCH_DEPLOY_REPEAT samples; a figure is the median of the rounds'
medians, and the ratio is also given in this process's CPU time (the worker is a thread of this
process, so its work counts; waiting for a core or for the broker does not), which the load of a
shared machine barely moves, unlike the wall time of a round trip through the broker.

Run: make bench."""

import contextlib
import copy
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import ROOT, bulk_variables, ratio, report, setup_django

SIZES = [int(s) for s in os.environ.get("BENCH_DEPLOY_VARIABLES", "2,10000").split(",")]
SAMPLES = int(os.environ.get("BENCH_DEPLOY_REPEAT", "7"))
ROUNDS = int(os.environ.get("BENCH_DEPLOY_ROUNDS", "3"))
NOTIFICATIONS = os.environ.get("BENCH_DEPLOY_NOTIFICATIONS", "worker")  # "worker" (own process) or "shared"
GRAPH = {
    "nodes": [
        {
            "id": "orders_src",
            "type": "source",
            "connection": "warehouse",
            "query": "SELECT order_id FROM {{ var_00000 }}",
        },
        {"id": "orders_out", "type": "destination", "connection": "reporting", "table": "{{ var_00001 }}"},
    ],
    "edges": [["orders_src", "orders_out"]],
}


def build(size: int):
    from django.contrib.auth import get_user_model

    from apps.approvals import services as approvals
    from apps.approvals.models import ApprovalRule
    from apps.connections import services as connection_services
    from apps.environments import permissions as perms
    from apps.environments import services as env_services
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services

    user_model = get_user_model()
    staff, _ = user_model.objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    owner = user_model.objects.create_user(f"owner-{size}", email=f"owner-{size}@example.com")
    approver = user_model.objects.create_user(f"approver-{size}", email=f"approver-{size}@example.com")
    org = tenancy_services.organization_create(
        actor=staff, name=f"Deploy {size}", slug=f"deploy-{size}", edition="enterprise", max_environments=5, owner=owner
    )
    tenancy_services.membership_add(actor=owner, organization=org, user=approver, role="admin")
    production = env_services.environment_create(actor=owner, organization=org, name="Production", kind="production")
    staging = env_services.environment_create(
        actor=owner, organization=org, name="Staging", kind="staging", promotes_to=production
    )
    development = env_services.environment_create(
        actor=owner, organization=org, name="Development", kind="development", promotes_to=staging, position=0
    )
    perms.forget(owner)
    project = pipeline_services.project_create(
        actor=owner, organization=org, name="Sales", default_environment=development
    )
    pipeline = pipeline_services.pipeline_create(actor=owner, project=project, name="Orders")
    bulk_variables(org, staging, size, default="t", override="stage_")
    from apps.connections.targets import sqlite_folder

    for name in ("warehouse", "reporting"):
        role = connection_services.connection_role_create(actor=owner, organization=org, name=name, kind="sqlite")
        for environment in (development, staging, production):
            folder = sqlite_folder(environment)  # a binding names a file in its environment's folder
            folder.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(folder / f"{name}.sqlite3").close()
            connection_services.connection_binding_set(
                actor=owner, role=role, environment=environment, params={"path": f"{name}.sqlite3"}
            )
    approvals.rule_save(actor=owner, rule=ApprovalRule(environment=staging, name="review", required_approvals=1))
    return {"owner": owner, "approver": approver, "pipeline": pipeline, "development": development}


def pending_request(world, number: int):
    from apps.approvals import services as approvals
    from apps.pipelines import services as pipeline_services
    from apps.runs import services as run_services

    graph = copy.deepcopy(GRAPH)
    graph["nodes"][0]["query"] += f" WHERE {number} > 0"
    version = pipeline_services.pipeline_version_create(actor=world["owner"], pipeline=world["pipeline"], graph=graph)
    run_services.deploy_direct(
        actor=world["owner"], pipeline=world["pipeline"], environment=world["development"], version=version
    )
    request, _created = approvals.promotion_request_create(
        actor=world["owner"], pipeline=world["pipeline"], version=version, source=world["development"]
    )
    return request


@contextlib.contextmanager
def notifications_worker(app, queue: str):
    """A `celery worker -Q <queue>` process on this benchmark's database and broker (the
    environment setup_django exported), e-mail kept in its memory; yields once it answers a ping."""
    hostname = f"bench-notifications-{os.getpid()}@localhost"
    log = tempfile.NamedTemporaryFile(prefix="bench-notifications-", suffix=".log", delete=False)  # noqa: SIM115
    command = [sys.executable, "-m", "celery", "-A", "planasonix_env", "worker", "--queues", queue]
    command += ["--pool", "threads", "--concurrency", "2", "--hostname", hostname, "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle"]
    env = {**os.environ, "EMAIL_URL": "memorymail://"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(destination=[hostname], timeout=1.0):
            assert process.poll() is None and time.monotonic() < deadline, f"no notifications worker: {log.name}"
        yield
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def main():
    setup_django()
    from celery.contrib.testing.worker import start_worker
    from django.db import connection, transaction
    from django.db.models.signals import post_save
    from django.test.utils import CaptureQueriesContext

    from apps.approvals import services as approvals
    from apps.approvals.models import PromotionRequest, PromotionState
    from planasonix_env.celery import app, ensure_broker_folders

    noop_done = threading.Event()
    deployed = threading.Event()

    @app.task(name="bench.noop", ignore_result=True)
    def noop():
        noop_done.set()

    def on_save(sender, instance, **kwargs):
        if instance.state == PromotionState.DEPLOYED:
            transaction.on_commit(deployed.set)

    post_save.connect(on_save, sender=PromotionRequest, weak=False)

    def settle() -> None:
        """Wait until no delivery is pending or sending, so that neither the floor nor the subject
        waits for, or shares the cores with, notifications sent before it."""
        from apps.notifications.models import Delivery, DeliveryStatus

        deadline = time.monotonic() + 60
        busy = Delivery.objects.filter(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING])
        while busy.exists():
            assert time.monotonic() < deadline, "the notification deliveries did not finish"
            time.sleep(0.005)

    from django.conf import settings

    ensure_broker_folders()
    rows = []
    default, notifications = settings.CELERY_TASK_DEFAULT_QUEUE, settings.NOTIFICATIONS_QUEUE
    own = NOTIFICATIONS != "shared"
    with contextlib.ExitStack() as stack:
        if own:
            stack.enter_context(notifications_worker(app, notifications))
        queues = [default] if own else [default, notifications]
        stack.enter_context(
            start_worker(
                app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=30, queues=queues
            )
        )
        for size in SIZES:
            world = build(size)
            samples: dict[str, list[list[float]]] = {
                name: [] for name in ("floor", "measured", "approve_call", "floor_cpu", "measured_cpu")
            }
            number = 0
            for _round in range(ROUNDS):
                for series in samples.values():
                    series.append([])
                for sample in range(SAMPLES + 1):  # the first sample of a round warms up
                    number += 1
                    request = pending_request(world, number)  # built before the floor: not timed
                    settle()  # its e-mails to the approvers and the previous sample's are sent: not timed
                    noop_done.clear()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    noop.delay()
                    assert noop_done.wait(60), "the worker did not run the no-op task"
                    floor_wall, floor_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                    deployed.clear()
                    start, start_cpu = time.perf_counter(), time.process_time()
                    approvals.promotion_approve(actor=world["approver"], request=request, comment="ok")
                    called = time.perf_counter() - start
                    assert deployed.wait(120), "the request was not deployed"
                    measured_wall, measured_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                    if sample:
                        for name, value in (
                            ("floor", floor_wall),
                            ("measured", measured_wall),
                            ("approve_call", called),
                            ("floor_cpu", floor_cpu),
                            ("measured_cpu", measured_cpu),
                        ):
                            samples[name][-1].append(value)

            def median(rounds: list[list[float]]) -> dict:
                """The median of the rounds' medians, and the smallest and largest single sample."""
                flat = [value for series in rounds for value in series]
                medians = [statistics.median(series) for series in rounds]
                return {"median": statistics.median(medians), "min": min(flat), "max": max(flat), "rounds": medians}

            f, m, a = median(samples["floor"]), median(samples["measured"]), median(samples["approve_call"])
            f_cpu, m_cpu = median(samples["floor_cpu"]), median(samples["measured_cpu"])
            # The queries of one more approval (not timed: capturing them costs time of its own).
            request = pending_request(world, number + 1)
            deployed.clear()
            with CaptureQueriesContext(connection) as captured:
                approvals.promotion_approve(actor=world["approver"], request=request, comment="ok")
            assert deployed.wait(120), "the request was not deployed"
            rows.append(
                {
                    "variables": size,
                    "noop_round_trip_ms": round(f["median"] * 1000, 1),
                    "noop_range_ms": [round(f["min"] * 1000, 1), round(f["max"] * 1000, 1)],
                    "approve_call_ms": round(a["median"] * 1000, 1),
                    "approve_to_deployed_ms": round(m["median"] * 1000, 1),
                    "approve_to_deployed_range_ms": [round(m["min"] * 1000, 1), round(m["max"] * 1000, 1)],
                    "approve_statements": len(captured.captured_queries),
                    "ratio": ratio(m, f),
                    "round_ratios": [round(mm / ff, 2) for mm, ff in zip(m["rounds"], f["rounds"], strict=True)],
                    "noop_cpu_ms": round(f_cpu["median"] * 1000, 1),
                    "approve_to_deployed_cpu_ms": round(m_cpu["median"] * 1000, 1),
                    "cpu_ratio": round(m_cpu["median"] / f_cpu["median"], 2) if f_cpu["median"] else None,
                }
            )
    where = "their own worker process" if own else "the measured worker thread too"
    report(
        "deploy",
        f"approve → deployed vs a no-op Celery round trip (notifications delivered by {where})",
        rows,
        [
            ("variables", "variables"),
            ("noop_round_trip_ms", "no-op ms"),
            ("approve_call_ms", "approve ms"),
            ("approve_to_deployed_ms", "→deployed ms"),
            ("approve_statements", "approve SQL"),
            ("ratio", "ratio"),
            ("noop_cpu_ms", "no-op cpu ms"),
            ("approve_to_deployed_cpu_ms", "cpu ms"),
            ("cpu_ratio", "cpu ratio"),
        ],
        repeat=f"{ROUNDS} rounds of {SAMPLES} (median of the rounds' medians)",
        broker=app.conf.broker_url.split("://")[0],
        notifications=f"queue {notifications!r} consumed by {where}",
    )


if __name__ == "__main__":
    main()
