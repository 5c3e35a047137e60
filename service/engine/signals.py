"""Reading iq_raw signals: a sample's IQ, synthesized again or read from its stored captures.

A sample's IQ is a pure function of the configuration and seed of the job that generated it,
its attempt index and its receivers (``kernel.iq``). So it is synthesized again from the job's
recorded configuration (an expansion that overrode a field generated its samples with the
override), or, with ``iq_storage: postgres``, read from ``heimdall.iq_captures``. Either way a
reader gets the same complex64 values: the synthesized IQ in the dataset's ``iq_format``,
decoded (``storage.capture_rows.served``).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from heimdall_synth.kernel.config import GenerationConfig
from heimdall_synth.service.engine.request import NotFoundError, NotIQError  # noqa: F401
from heimdall_synth.service.storage.capture_rows import decode_capture, served
from heimdall_synth.service.storage.ids import uuid_of


@dataclass(frozen=True)
class Generation:
    """What generated a job's samples: its configuration, seed and terrain grid."""

    config: GenerationConfig
    seed: int
    terrain: object  # kernel.terrain.ElevationGrid or None


@dataclass
class SampleSignal:
    """One iq_raw sample as a reader gets it."""

    dataset_id: uuid.UUID
    sample_index: int
    attempt_index: int
    iq: np.ndarray           # complex64 (receivers, capture samples), sqrt(mW)
    sample_rate_hz: float
    frequency_hz: float
    bandwidth_hz: float
    noise_floor_dbm: float
    windows: int             # measurement windows the capture is split into (num_chunks)
    iq_format: str
    iq_storage: str
    receivers: list          # per receiver: rx_id, name, lat, lon, alt_m, distance_km, snr_db,
                             # rssi_dbm, signal_present
    transmitter: dict        # lat, lon, alt_m, power_dbm

    @property
    def window_edges(self) -> np.ndarray:
        """IQ sample index where each measurement window starts, then the capture's end (the
        last window takes the remainder, as ``kernel.iq_features`` splits it)."""
        n = self.iq.shape[1]
        per = n // self.windows
        return np.array([w * per for w in range(self.windows)] + [n])


_GENERATIONS: "OrderedDict[tuple, Generation]" = OrderedDict()
_GENERATIONS_LOCK = threading.Lock()
GENERATIONS_KEPT = 64


def generation(conn, dataset: dict, job_id) -> Generation:
    """The configuration, seed and terrain that generated the samples of ``job_id`` (the
    dataset's own when the job is unknown: rows written without one)."""
    key = (str(dataset["id"]), str(job_id))
    with _GENERATIONS_LOCK:
        if key in _GENERATIONS:
            _GENERATIONS.move_to_end(key)
            return _GENERATIONS[key]
    spec = None
    if job_id is not None:
        with conn.transaction():
            row = conn.execute("SELECT config FROM heimdall.generation_jobs WHERE id = %s",
                               (job_id,)).fetchone()
        spec = row[0] if row else None
    if spec and "config" in spec:
        cfg, seed = GenerationConfig.from_dict(spec["config"]), int(spec["seed"])
        sha = spec.get("terrain_sha256")
    else:
        cfg, seed = GenerationConfig.from_dict(dataset["config"]), int(dataset["seed"])
        sha = dataset.get("terrain_sha256")
    terrain = None
    if cfg.terrain is not None:
        from heimdall_synth.service.storage.terrains import get_terrain
        terrain = get_terrain(conn, cfg.terrain)
        if sha is not None and terrain.sha256() != sha:
            raise ValueError(f"terrain {cfg.terrain!r} was replaced since these samples were "
                             "generated (its SHA-256 differs); register the grid they were "
                             "made with to synthesize their IQ again")
    made = Generation(cfg, seed, terrain)
    with _GENERATIONS_LOCK:
        _GENERATIONS[key] = made
        while len(_GENERATIONS) > GENERATIONS_KEPT:
            _GENERATIONS.popitem(last=False)
    return made


#: Accepted attempts further apart than this are run in separate kernel calls: regenerating a
#: shuffled batch must not evaluate every attempt between its first and its last.
ATTEMPT_GAP = 256


def synthesize_attempts(made: Generation, attempts, threads: int | None = None):
    """Served IQ of accepted attempts (increasing) of one generation: (complex64 (samples,
    receiver slots, capture), receivers per sample). Runs of close attempts go through the
    kernel together (the rejected ones between them are cheap); then the wanted ones are
    synthesized at once."""
    from heimdall_synth.kernel import iq
    from heimdall_synth.kernel.batch import AttemptBatch, run_attempts

    cfg = made.config
    attempts = np.asarray(attempts, np.int64)
    cuts = np.flatnonzero(np.diff(attempts) > ATTEMPT_GAP) + 1
    parts = []
    for run in np.split(attempts, cuts):
        batch = run_attempts(cfg, made.seed, int(run[0]), int(run[-1] - run[0]) + 1,
                             threads=threads, terrain=made.terrain)
        rows = run - run[0]
        if not batch.valid[rows].all():
            raise ValueError(f"attempts {run[~batch.valid[rows]].tolist()} are not accepted "
                             "by this configuration and seed: the sample rows do not match them")
        parts.append(batch.take(rows))
    batch = AttemptBatch(**{k: np.concatenate([getattr(p, k) for p in parts])
                            for k in AttemptBatch.ARRAYS})
    rows = np.arange(len(attempts))
    x = iq.synthesize(batch, rows, made.seed, cfg.num_chunks, cfg.iq_sample_rate_hz,
                      cfg.iq_duration_ms, cfg.bandwidth_hz, cfg.noise_floor_dbm,
                      fading=cfg.enable_fading, threads=threads)
    return served(x, cfg.iq_format), batch.n_receivers[rows].astype(np.int64)


def rows_iq(conn, dataset: dict, rows, slots: int, threads: int | None = None) -> np.ndarray:
    """Served IQ of sample rows (sample_index, attempt_index, job_id), in their order:
    complex64 (len(rows), slots, capture), zeros in padding slots. Each job's samples are read
    from their stored captures (iq_storage postgres) or synthesized again together."""
    capture = GenerationConfig.from_dict(dataset["config"]).iq_capture
    out = np.zeros((len(rows), slots, capture), np.complex64)
    by_job: dict = {}
    for n, row in enumerate(rows):
        by_job.setdefault(row[2], []).append(n)
    for job_id, members in by_job.items():
        made = generation(conn, dataset, job_id)
        if made.config.iq_storage == "postgres":
            out[members] = stored_captures(conn, dataset["id"], [rows[n][0] for n in members],
                                           slots, capture)
            continue
        order = sorted(members, key=lambda n: rows[n][1])  # attempts increasing
        x, _ = synthesize_attempts(made, [rows[n][1] for n in order], threads=threads)
        out[order, :x.shape[1]] = x
    return out


SAMPLE_COLUMNS = ("attempt_index, job_id, tx_latitude, tx_longitude, tx_altitude_m, "
                  "tx_power_dbm, frequency_hz, rx_id, rx_lat, rx_lon, rx_alt_m, distance_km, "
                  "snr_db, rssi_dbm, signal_present")


def iq_dataset(conn, dataset_id) -> dict:
    """The dataset (NotFoundError naming dataset_id), refused with NotIQError unless iq_raw."""
    from heimdall_synth.service.storage.datasets import get_dataset
    dataset = get_dataset(conn, uuid_of(dataset_id, "dataset_id"), with_count=False)
    if dataset["dataset_type"] != "iq_raw":
        raise NotIQError(f"dataset {dataset['id']} is {dataset['dataset_type']!r}: only iq_raw "
                         "datasets have IQ")
    return dataset


def sample_signal(conn, dataset_id, sample_index: int, threads: int | None = None
                  ) -> SampleSignal:
    """Sample ``sample_index`` of an iq_raw dataset with its IQ (NotFoundError naming
    sample_index when the dataset has no such sample)."""
    dataset = iq_dataset(conn, dataset_id)
    with conn.transaction():
        row = conn.execute(f"SELECT {SAMPLE_COLUMNS} FROM heimdall.measurement_features "
                           "WHERE dataset_id = %s AND sample_index = %s",
                           (dataset["id"], sample_index)).fetchone()
    if row is None:
        raise NotFoundError(f"dataset {dataset['id']} has no sample {sample_index} (it holds "
                            f"{dataset['num_samples']:,})", field="sample_index")
    (attempt, job_id, tx_lat, tx_lon, tx_alt, tx_power, frequency_hz, rx_id, rx_lat, rx_lon,
     rx_alt, distance, snr, rssi, present) = row
    cfg = generation(conn, dataset, job_id).config
    x = rows_iq(conn, dataset, [(sample_index, attempt, job_id)], len(rx_id), threads)[0]
    names = ([r["name"] for r in cfg.receivers] if not cfg.use_random_receivers else None)
    receivers = [{"rx_id": int(i), "name": names[i] if names else f"random receiver {i}",
                  "lat": float(la), "lon": float(lo), "alt_m": float(al),
                  "distance_km": float(d), "snr_db": float(s), "rssi_dbm": float(r),
                  "signal_present": bool(p)}
                 for i, la, lo, al, d, s, r, p in zip(rx_id, rx_lat, rx_lon, rx_alt, distance,
                                                      snr, rssi, present)]
    return SampleSignal(
        dataset_id=dataset["id"], sample_index=int(sample_index), attempt_index=int(attempt),
        iq=np.ascontiguousarray(x), sample_rate_hz=cfg.iq_sample_rate_hz,
        frequency_hz=float(frequency_hz), bandwidth_hz=cfg.bandwidth_hz,
        noise_floor_dbm=cfg.noise_floor_dbm, windows=cfg.num_chunks, iq_format=cfg.iq_format,
        iq_storage=cfg.iq_storage, receivers=receivers,
        transmitter={"lat": float(tx_lat), "lon": float(tx_lon), "alt_m": float(tx_alt),
                     "power_dbm": float(tx_power)})


def stored_captures(conn, dataset_id, sample_indices, slots: int, capture: int) -> np.ndarray:
    """Stored IQ of samples (complex64 (samples, slots, capture), zeros in padding slots)."""
    out = np.zeros((len(sample_indices), slots, capture), np.complex64)
    where = {int(s): k for k, s in enumerate(sample_indices)}
    with conn.transaction():
        cur = conn.execute(
            "SELECT sample_index, receiver, format, scale, iq FROM heimdall.iq_captures "
            "WHERE dataset_id = %s AND sample_index = ANY(%s) ORDER BY sample_index, receiver",
            (dataset_id, list(where)))
        for sample_index, receiver, fmt, scale, data in cur:
            out[where[sample_index], receiver] = decode_capture(data, fmt, scale)
    return out


def sample_blocks(conn, dataset: dict, block: int = 16, threads: int | None = None,
                  slots: int | None = None):
    """Every sample of an iq_raw dataset in order (its ``num_samples``), ``block`` at a time:
    yields (first sample index, IQ (k, slots, capture) complex64, receivers per sample).
    ``slots`` defaults to the dataset configuration's receiver count. Memory holds one block."""
    slots = slots or GenerationConfig.from_dict(dataset["config"]).max_receivers
    total = int(dataset["num_samples"])
    for first in range(0, total, block):
        with conn.transaction():
            rows = conn.execute(
                "SELECT sample_index, attempt_index, job_id, cardinality(rx_id) FROM "
                "heimdall.measurement_features WHERE dataset_id = %s AND sample_index >= %s "
                "AND sample_index < %s ORDER BY sample_index",
                (dataset["id"], first, first + block)).fetchall()
        n_rx = np.array([r[3] for r in rows], np.int64)
        yield first, rows_iq(conn, dataset, rows, slots, threads), n_rx
