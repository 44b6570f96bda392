"""Shared plumbing of the benchmark suite: a private database (SQLite in a temporary folder, or the
PostgreSQL database named by BENCH_DATABASE_URL), timing, ratio tables and results/*.json.

Every benchmark measures its floor in the same run, on the same database, and reports the ratio."""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPEAT = int(os.environ.get("BENCH_REPEAT", "7"))
sys.path.insert(0, str(ROOT))


def setup_django(*, urlconf: str | None = None) -> None:
    """Django on a benchmark database, migrated. Redis is used only when BENCH_CACHE_URL /
    BENCH_CELERY_BROKER_URL say so (local memory and a private filesystem broker otherwise)."""
    tmp = Path(tempfile.mkdtemp(prefix="planasonix-bench-"))
    os.environ["PLANASONIX_VAR_DIR"] = str(tmp)
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ["CACHE_URL"] = os.environ.get("BENCH_CACHE_URL", "locmemcache://bench")
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_CELERY_BROKER_URL", "filesystem://")
    os.environ["DJANGO_SETTINGS_MODULE"] = "planasonix_env.settings"
    os.environ.setdefault("API_THROTTLE_RATE_KEY", "1000000/minute")
    os.environ.setdefault("API_THROTTLE_RATE_USER", "1000000/minute")
    os.environ.setdefault("API_THROTTLE_RATE_ANON", "1000000/minute")
    import django
    from django.conf import settings

    django.setup()
    if urlconf:
        settings.ROOT_URLCONF = urlconf
    settings.ALLOWED_HOSTS = ["*"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if os.environ.get("BENCH_DATABASE_URL"):
        call_command("flush", verbosity=0, interactive=False)  # an earlier run's rows would skew sizes
    from django.core.cache import cache

    cache.clear()
    import gc

    gc.freeze()  # as the web and worker processes do once the app has loaded (gunicorn.conf.py, celery.py)


def timed(func, repeat: int = REPEAT) -> dict:
    """Median, min and max seconds of `repeat` calls (after one warm-up call), and the median of
    this process's CPU seconds per call ("cpu"): on a shared machine wall time also counts waiting
    for a core (for this process and for the database server), CPU time does not."""
    func()
    samples, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "cpu": statistics.median(cpu),
    }


def interleaved(funcs: dict, repeat: int = REPEAT) -> dict:
    """`timed` for several functions at once, called in turns (the order rotating each round), so
    that a subject and its floor see the same load: on a shared machine the load changes within
    seconds, and timing the floor first and the subject afterwards measures the load's changes."""
    for func in funcs.values():
        func()
    names = list(funcs)
    samples: dict[str, list] = {name: [] for name in names}
    cpu: dict[str, list] = {name: [] for name in names}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            funcs[name]()
            samples[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {
            "median": statistics.median(samples[name]),
            "min": min(samples[name]),
            "max": max(samples[name]),
            "cpu": statistics.median(cpu[name]),
        }
        for name in names
    }


def cpu_ratio(measured: dict, floor: dict) -> float:
    return round(measured["cpu"] / floor["cpu"], 2) if floor["cpu"] else float("nan")


def ms(sample: dict) -> str:
    return f"{sample['median'] * 1000:9.2f} ({sample['min'] * 1000:.1f}–{sample['max'] * 1000:.1f})"


def ratio(measured: dict, floor: dict) -> float:
    return round(measured["median"] / floor["median"], 2)


def report(
    name: str, title: str, rows: list[dict], columns: list[tuple[str, str]], *, repeat: int | None = None, **extra
) -> None:
    """Print `rows` as a table and write results/<name>.json (`repeat`: samples per figure, if not REPEAT)."""
    from django.db import connection

    repeat = REPEAT if repeat is None else repeat
    print(f"\n{title} on {connection.vendor}, median (min–max) of {repeat}")
    print("  ".join(f"{label:>{max(len(label), 10)}}" for _key, label in columns))
    for row in rows:
        cells = []
        for key, label in columns:
            value = row[key]
            width = max(len(label), 10)
            cells.append(f"{value:>{width}.2f}" if isinstance(value, float) else f"{value!s:>{width}}")
        print("  ".join(cells))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "database": connection.vendor, "repeat": repeat, "rows": rows, **extra}
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def bulk_variables(organization, environment, size: int, *, default: str, override: str) -> None:
    """`size` org-scoped string variables var_00000… with a default and an override in `environment`
    (bulk: history rows are irrelevant to what the benchmarks measure)."""
    from apps.variables.models import Variable, VariableOverride

    variables = Variable.objects.bulk_create(
        [
            Variable(organization=organization, name=f"var_{i:05d}", type="string", default_value=f"{default}{i}")
            for i in range(size)
        ],
        batch_size=1000,
    )
    VariableOverride.objects.bulk_create(
        [
            VariableOverride(variable=v, environment=environment, value=f"{override}{i}")
            for i, v in enumerate(variables)
        ],
        batch_size=1000,
    )
