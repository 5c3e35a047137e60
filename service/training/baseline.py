"""The baseline localizer: a reference model trained on a dataset's train split and scored on its
test split, beside the Cramer-Rao bound of the same test samples (docs/TRAINING.md).

    run = run_baseline(database_url, "demo", seed=0)   # stored in heimdall.baseline_runs
    run["median_error_m"], run["p90_error_m"], run["median_crb_m"]

The model: two gradient-boosted tree ensembles (scikit-learn's ``HistGradientBoostingRegressor``,
the ``train`` extra), one for the transmitter's east and one for its north coordinate in metres
from the train split's mean position. It was chosen by measurement (bench/baseline.py compares it
with an MLP on the same features): as accurate, deterministic without a random state to carry,
and it takes a receiver that does not detect as a missing value (NaN) natively.

The inputs, per receiver slot: the received power and SNR where the receiver detects (NaN where
it does not or the slot is padding; for iq_raw the ones measured from the IQ), the power minus
the strongest receiver's (the transmit power is unknown to a localizer, so differences carry the
geometry) and the receiver's east and north position (km): 5 numbers a slot. The label and the
receivers' positions share one local plane (equirectangular about the origin; its error is far
below the errors measured here, for areas of a few hundred kilometres).

Everything a run reads comes from ONE snapshot of the dataset (its rows and counts), and a run is
a pure function of that and the seed: two runs with the same seed store the same errors.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from heimdall_synth.kernel.defaults import MODEL_VERSION, SPLITS
from heimdall_synth.kernel.splits import METRES_PER_DEGREE
from heimdall_synth.service.engine.request import ConflictError

#: The gradient-boosting settings (bench/baseline.py measured them against more iterations,
#: no feature sampling and an MLP). The seed draws the half of the inputs each split may use
#: (max_features): the run's only randomness. early_stopping off: no hold-out drawn at random.
PARAMS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 63, "min_samples_leaf": 20,
          "l2_regularization": 0.0, "max_features": 0.5, "early_stopping": False}
METHOD = ("gradient-boosted trees (scikit-learn HistGradientBoostingRegressor: 100 iterations, "
          "63 leaves, learning rate 0.1, half the inputs per split), one per axis, on "
          "per-receiver power, SNR, power below the strongest receiver and receiver position")
#: The fewest samples a run accepts in its train and test splits.
MIN_TRAIN, MIN_TEST = 100, 20
#: The per-receiver measurements read for each dataset type: (power, SNR).
MEASURED = {"feature_based": ("rssi_dbm", "snr_db"),
            "iq_raw": ("iq_rssi_dbm_mean", "iq_snr_db_mean")}
PER_SLOT = ("power_dbm", "snr_db", "power_below_strongest_db", "rx_east_km", "rx_north_km")
QUALITY = ("crb_m", "gdop")


def require_sklearn():
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
    except ImportError:
        raise ImportError("the baseline needs scikit-learn: pip install "
                          "'heimdall-synth[train]'") from None
    return HistGradientBoostingRegressor


def local_metres(lat, lon, origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(east, north) metres of positions from ``origin`` (lat, lon) on the local plane."""
    lat0, lon0 = origin
    east = (np.asarray(lon, np.float64) - lon0) * METRES_PER_DEGREE * np.cos(np.radians(lat0))
    north = (np.asarray(lat, np.float64) - lat0) * METRES_PER_DEGREE
    return east, north


def design_matrix(rows: dict, dataset_type: str, origin: tuple[float, float]) -> np.ndarray:
    """The model's inputs: (samples, slots x 5) float32, slot-major in ``PER_SLOT`` order;
    NaN where a receiver does not detect (measurements) or the slot is padding (all five)."""
    power_col, snr_col = MEASURED[dataset_type]
    detected = rows["signal_present"]
    power = np.where(detected, rows[power_col], np.nan)
    snr = np.where(detected, rows[snr_col], np.nan)
    strongest = np.max(np.where(detected, power, -np.inf), axis=1, keepdims=True)
    east, north = local_metres(rows["rx_lat"], rows["rx_lon"], origin)  # NaN in padding
    per_slot = np.stack([power, snr, power - strongest, east / 1000.0, north / 1000.0], axis=2)
    return per_slot.reshape(len(power), -1).astype(np.float32)


def read_rows(url: str, ref: str) -> tuple[dict, dict]:
    """(dataset row, column -> array over all its samples) from one snapshot: the columns a
    run needs, in sample_index order."""
    from heimdall_synth.service.export.reader import Snapshot
    wanted = ("split", "tx_latitude", "tx_longitude", "rx_lat", "rx_lon", "signal_present")
    parts: dict[str, list] = {}
    with Snapshot(url, ref, columns=lambda d: wanted + MEASURED[d["dataset_type"]] + QUALITY
                  ) as snap:
        for chunk in snap.chunks():
            for column in snap.columns:
                parts.setdefault(column.name, []).append(chunk.values[column.name])
        dataset = dict(snap.dataset, rows=snap.rows)
    rows = {name: np.concatenate(v) for name, v in parts.items()}
    return dataset, rows


def run_baseline(url: str, ref: str, seed: int = 0, store: bool = True) -> dict:
    """Train the baseline on dataset ``ref``'s train split, score it on its test split and
    (with ``store``) insert the run into heimdall.baseline_runs. Returns the run as stored,
    with ``test_sample_index`` and ``test_error_m`` as arrays. ConflictError (naming
    ``split``) when a split has too few samples."""
    from heimdall_synth.kernel.config import check_value
    seed = check_value("seed", seed)
    regressor = require_sklearn()
    started = time.perf_counter()
    dataset, rows = read_rows(url, ref)
    split = rows.get("split", np.empty(0, np.int16))  # no key: the dataset has no rows
    train, test = split == SPLITS.index("train"), split == SPLITS.index("test")
    for name, mask, least in (("train", train, MIN_TRAIN), ("test", test, MIN_TEST)):
        if mask.sum() < least:
            raise ConflictError(
                f"dataset {dataset['name']!r} has {int(mask.sum()):,} samples in its {name} "
                f"split; the baseline needs at least {least:,} (generate or expand more)",
                ["split"], code="too_few_samples")
    origin = (float(rows["tx_latitude"][train].mean()), float(rows["tx_longitude"][train].mean()))
    x = design_matrix(rows, dataset["dataset_type"], origin)
    target = np.column_stack(local_metres(rows["tx_latitude"], rows["tx_longitude"], origin))

    fit_started = time.perf_counter()
    predicted = np.empty((int(test.sum()), 2))
    # scikit-learn takes a 32-bit state: one per axis, drawn from the whole (63-bit) seed
    states = np.random.SeedSequence(seed).generate_state(2)
    for axis in range(2):
        model = regressor(random_state=int(states[axis]), **PARAMS).fit(x[train],
                                                                         target[train, axis])
        predicted[:, axis] = model.predict(x[test])
    train_seconds = time.perf_counter() - fit_started

    error = np.hypot(*(predicted - target[test]).T)
    centre_error = np.hypot(*target[test].T)  # the origin is the train split's mean position
    run = {
        "id": uuid.uuid4(), "dataset_id": dataset["id"], "method": METHOD,
        "params": {**PARAMS, "inputs_per_receiver": list(PER_SLOT),
                   "measurements": list(MEASURED[dataset["dataset_type"]]),
                   "origin": list(origin)},
        "seed": seed, "model_version": MODEL_VERSION, "dataset_samples": dataset["rows"],
        "train_samples": int(train.sum()), "test_samples": int(test.sum()),
        "median_error_m": float(np.median(error)),
        "p90_error_m": float(np.percentile(error, 90)),
        "centre_median_error_m": float(np.median(centre_error)),
        "centre_p90_error_m": float(np.percentile(centre_error, 90)),
        "median_crb_m": _finite_median(rows["crb_m"][test]),
        "median_gdop": _finite_median(rows["gdop"][test]),
        "train_seconds": train_seconds,
        "test_sample_index": rows["sample_index"][test].astype(np.int64),
        "test_error_m": error.astype(np.float32),
    }
    run["total_seconds"] = time.perf_counter() - started
    if store:
        from heimdall_synth.service.storage.baselines import insert_run
        from heimdall_synth.service.storage.database import connect
        with connect(url) as conn:
            run["created_at"] = insert_run(conn, run)
    return run


def _finite_median(values) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else None
