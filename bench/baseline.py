"""The baseline localizer on the default dataset, and the candidates it was chosen from.

    python bench/baseline.py [--samples 200000] [--record]

1. A default feature_based dataset of --samples samples (seed 1).
2. ``heimdall-synth baseline`` on it, as a user runs it (a new process: start-up, reading the
   dataset, training, scoring, storing, the picture): its wall time and its figures.
3. The candidates on the same train and test rows and inputs: the chosen gradient boosting,
   the same with 200 iterations, the same without input sampling, and a small MLP (PyTorch,
   two hidden layers of 256, Adam, 8 epochs): median and 90th-percentile error, training time.

The database is $DATABASE_URL, else a fresh embedded PostgreSQL in a temporary folder.
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

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numpy as np  # noqa: E402

from bench.results import bench_database, machine, record  # noqa: E402
from heimdall_synth.kernel.defaults import SPLITS  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402
from heimdall_synth.service.storage import jobs  # noqa: E402
from heimdall_synth.service.storage.database import connect  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402
from heimdall_synth.service.training import baseline  # noqa: E402


def errors(predicted, truth) -> tuple[float, float]:
    e = np.hypot(*(predicted - truth).T)
    return float(np.median(e)), float(np.percentile(e, 90))


def trees(x_train, y_train, x_test, **changes) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingRegressor
    params = {**baseline.PARAMS, **changes}
    return np.column_stack([HistGradientBoostingRegressor(random_state=axis, **params)
                            .fit(x_train, y_train[:, axis]).predict(x_test)
                            for axis in range(2)])


def mlp(x_train, y_train, x_test, epochs: int = 8) -> np.ndarray:
    import torch
    torch.manual_seed(0)

    def prepared(x):  # missing values as 0 plus a missing flag per input
        missing = np.isnan(x)
        return np.concatenate([np.where(missing, 0.0, x), missing], axis=1).astype(np.float32)

    a, b = prepared(x_train), prepared(x_test)
    mean, scale = a.mean(axis=0), a.std(axis=0) + 1e-6
    a, b = (a - mean) / scale, (b - mean) / scale
    unit = 50_000.0  # metres: targets of order 1
    net = torch.nn.Sequential(torch.nn.Linear(a.shape[1], 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 2))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    xs, ys = torch.from_numpy(a), torch.from_numpy((y_train / unit).astype(np.float32))
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 512):
            batch = order[start:start + 512]
            optimizer.zero_grad()
            loss = (net(xs[batch]) - ys[batch]).norm(dim=1).mean()  # mean distance
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return net(torch.from_numpy(b)).numpy().astype(np.float64) * unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    with bench_database("heimdall-bench-baseline-") as url:
        with connect(url) as conn:
            upgrade(conn)
            created = jobs.create_job(conn, GenerateRequest.from_dict(
                {"name": "default", "num_samples": args.samples, "seed": 1}))
        assert run_job(url, created["job_id"]).status == "completed"

        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "DATABASE_URL": url}
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "heimdall_synth.service.cli", "--json",
                                   "baseline", "default", "--plot", str(Path(tmp) / "b.png")],
                                  env=env, capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
        run = json.loads(done.stdout)
        print(f"heimdall-synth baseline: {wall:.1f} s; median {run['median_error_m']:,.0f} m, "
              f"p90 {run['p90_error_m']:,.0f} m; centre {run['centre_median_error_m']:,.0f} m; "
              f"median CRB {run['median_crb_m']:,.0f} m; training {run['train_seconds']:.1f} s",
              flush=True)

        dataset, rows = baseline.read_rows(url, "default")
        train = rows["split"] == SPLITS.index("train")
        test = rows["split"] == SPLITS.index("test")
        origin = (float(rows["tx_latitude"][train].mean()),
                  float(rows["tx_longitude"][train].mean()))
        x = baseline.design_matrix(rows, "feature_based", origin)
        y = np.column_stack(baseline.local_metres(rows["tx_latitude"], rows["tx_longitude"],
                                                  origin))
        candidates = (
            ("chosen: gradient boosting, 100 iterations, half the inputs per split",
             lambda: trees(x[train], y[train], x[test])),
            ("gradient boosting, 200 iterations, half the inputs per split",
             lambda: trees(x[train], y[train], x[test], max_iter=200)),
            ("gradient boosting, 100 iterations, all inputs per split",
             lambda: trees(x[train], y[train], x[test], max_features=1.0)),
            ("MLP (PyTorch), 2 x 256 hidden, Adam, 8 epochs",
             lambda: mlp(x[train], y[train], x[test])),
        )
        table = []
        for name, fit in candidates:
            t0 = time.perf_counter()
            predicted = fit()
            seconds = time.perf_counter() - t0
            median, p90 = errors(predicted, y[test])
            table.append((name, median, p90, seconds))
            print(f"{name}: median {median:,.0f} m, p90 {p90:,.0f} m, {seconds:.1f} s",
                  flush=True)
    if args.record:
        record("baseline", "Baseline localizer (`python bench/baseline.py --record`)", [
            f"On {machine()}; a default dataset of {args.samples:,} samples (seed 1); one "
            "embedded PostgreSQL 18.", "",
            "| `heimdall-synth baseline` | figure |", "|---|---|",
            f"| whole command, wall time (start-up, read, train, score, store, picture) | "
            f"**{wall:.1f} s** |",
            f"| training (two ensembles) | {run['train_seconds']:.1f} s |",
            f"| train / test samples | {run['train_samples']:,} / {run['test_samples']:,} |",
            f"| median error | **{run['median_error_m'] / 1000:,.2f} km** |",
            f"| 90th-percentile error | **{run['p90_error_m'] / 1000:,.2f} km** |",
            f"| predicting the centre: median, p90 | {run['centre_median_error_m'] / 1000:,.2f}"
            f" km, {run['centre_p90_error_m'] / 1000:,.2f} km |",
            f"| ratio of medians, model / centre | {run['median_error_m'] / run['centre_median_error_m']:.2f} |",
            f"| median CRB, median GDOP of the test samples | "
            f"{run['median_crb_m'] / 1000:,.2f} km, {run['median_gdop']:.2f} |", "",
            "The candidates, on the same rows and inputs (training and prediction time):", "",
            "| model | median error | p90 error | time |", "|---|---|---|---|",
            *[f"| {name} | {median / 1000:,.2f} km | {p90 / 1000:,.2f} km | {seconds:.1f} s |"
              for name, median, p90, seconds in table]])


if __name__ == "__main__":
    main()
