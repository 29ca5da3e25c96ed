"""Benchmark: what another worker buys a sweep on a PostgreSQL database. For each worker count N (1, then 2)
it starts N separate `intformer sweep` processes (as on N machines: each its own --out, one --study) against
a local PostgreSQL server that it starts itself (tests/pg_server.py; Debian's `postgresql` package), on a
small space, and prints from the trials in the database:

  - trials per hour (finished trials over the wall time from the first start to the last finish) beside its
    bound, N times the one-worker rate (and the machine's cores: workers on one machine share them);
  - the Pareto front's growth: its size (of all four objectives) after each quarter of the run, beside the
    complete trials so far (its bound).

    python bench/sweep_bench.py [--workers 1,2] [--trials 16] [--epochs 1] [--max-train-windows 1000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]               # pg_server (the package itself is installed)

from pg_server import PgServer, pg_bin  # noqa: E402

from intformer.sweep import OBJECTIVES  # noqa: E402

SPACE = ["--space", "window=8,12", "--space", "d_model=8", "--space", "ffn=16", "--space", "heads=1,2",
         "--space", "layers=1", "--space", "lanes=1,2", "--space", "bits=4,6,8"]


def run_study(pg: PgServer, name: str, workers: int, args, tmp: Path) -> dict:
    extra = ["--epochs", str(args.epochs), "--max-train-windows", str(args.max_train_windows)]
    cmd = [sys.executable, "-c", "from intformer.cli import main; main()", "sweep", *SPACE, *extra,
           "--trials", str(args.trials), "--storage", pg.url, "--study", name, "--json"]
    start = time.monotonic()
    procs = [subprocess.Popen(cmd + ["--out", str(tmp / name / f"machine-{k}")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for k in range(workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a worker of {name} failed ({p.returncode}): {err[-2000:]}")
    wall = time.monotonic() - start
    import optuna
    from optuna.trial import TrialState
    study = optuna.load_study(study_name=name, storage=pg.url.replace("postgresql://", "postgresql+psycopg://"))
    trials = [t for t in study.get_trials() if t.datetime_complete]
    t0 = min(t.datetime_start for t in trials)
    span = (max(t.datetime_complete for t in trials) - t0).total_seconds()
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.datetime_complete)
    growth = []
    for q in (0.25, 0.5, 0.75, 1.0):
        so_far = [t for t in done if (t.datetime_complete - t0).total_seconds() <= q * span + 1e-6]
        growth.append({"seconds": q * span, "front": len(front(so_far)), "complete": len(so_far)})
    return {"workers": workers, "trials": len(trials), "complete": len(done), "seconds": span,
            "wall_s": wall, "trials_per_hour": 3600 * len(trials) / span,
            "workers_seen": len({(t.user_attrs.get("host"), t.user_attrs.get("worker")) for t in trials}),
            "front": len(study.best_trials), "growth": growth}


def front(trials) -> list:
    """The non-dominated trials (all objectives minimised)."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a.values, b.values)) and a.values != b.values
    return [t for t in trials if not any(dominates(o, t) for o in trials)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="worker counts to run, in turn")
    ap.add_argument("--trials", type=int, default=16, help="trials per study")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-train-windows", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if pg_bin() is None:
        print("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql",
              file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp, PgServer() as pg:
        for n in (int(w) for w in args.workers.split(",")):
            r = run_study(pg, f"bench-{n}-workers", n, args, Path(tmp))
            results.append(r)
            if args.json:
                continue
            base = results[0]["trials_per_hour"] / results[0]["workers"]
            bound = min(n, os.cpu_count() or n) * base
            print(f"{n} worker(s): {r['trials']} trials ({r['complete']} complete) in {r['seconds']:.0f} s "
                  f"by {r['workers_seen']} worker(s): {r['trials_per_hour']:,.0f} trials/h (bound "
                  f"{bound:,.0f}: {n} x the 1-worker rate {base:,.0f}, {os.cpu_count()} cores; "
                  f"{100 * r['trials_per_hour'] / bound:.0f} % of it)")
            print("    Pareto front (" + ", ".join(OBJECTIVES) + "), size / complete trials (its bound): "
                  + "  ".join(f"{g['seconds']:.0f} s: {g['front']}/{g['complete']}" for g in r["growth"]))
            sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
