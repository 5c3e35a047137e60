"""The data behind the report's plots, computed in PostgreSQL with bounded memory.

Nothing here reads a dataset into Python; what comes back is bounded whatever its size:

* quality histograms (mean SNR, GDOP, CRB, detecting receivers) cover EVERY sample, in two
  scans for any number of them: one for their ranges, one that bins them all (width_bucket
  under GROUPING SETS). O(bins) rows come back.
* the map and the distance-power plot read an evenly spaced sample: every k-th sample_index,
  at most ``SAMPLE_LIMIT`` samples, fetched through the (dataset_id, sample_index) index, so
  the cost does not grow with the dataset either. Each sample is an independent draw (a pure
  function of its attempt index, C4), so every k-th one is an unbiased sample, spread over all
  of the dataset's jobs in proportion. The links' (distance, power) pairs are binned in SQL too.
* the receivers and the area come from the dataset's stored configuration (random receivers:
  their positions in a sample of at most ``RECEIVER_SAMPLE_LIMIT`` samples); so does the
  terrain drawn as shaded relief under the map (its grid read from heimdall.terrains);
* the outcomes of attempts are summed over the dataset's jobs in SQL.

Use ``snapshot(conn)`` around several calls so that their figures agree while a job appends.
Column names in the SQL below are constants of this module, never user input.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from psycopg.pq import TransactionStatus

from heimdall_synth.kernel.layout import REJECT_REASONS

FEATURES = "heimdall.measurement_features"
#: The map and the distance-power plot read at most this many samples.
SAMPLE_LIMIT = 20_000
#: Random receivers are drawn on the map from at most this many samples' receiver lists.
RECEIVER_SAMPLE_LIMIT = 2_000
DISTANCE_BINS, POWER_BINS = 60, 50

# Rows of the dataset whose sample_index is one of 0, k, 2k, ... <= last (index lookups).
_SAMPLED = (f"generate_series(0, %(last)s, %(stride)s) AS g(i) JOIN {FEATURES} f "
            "ON f.dataset_id = %(id)s AND f.sample_index = g.i")


@contextmanager
def snapshot(conn):
    """One REPEATABLE READ transaction around several queries (just a savepoint when a
    transaction is already open), so that the plots of one report agree with each other."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        with conn.transaction():
            yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def data_version(conn, dataset_id) -> tuple:
    """What changes whenever anything a plot shows can change: the dataset's count and attempt
    cursor (rows are only appended, and every batch moves the cursor, C3) and its jobs' count
    and attempts (the outcome chart). NotFoundError naming dataset_id when there is none."""
    from heimdall_synth.service.engine.request import NotFoundError

    row = conn.execute(
        "SELECT d.num_samples, d.next_attempt_index, count(j.id), coalesce(sum(j.attempted), 0) "
        "FROM heimdall.synthetic_datasets d LEFT JOIN heimdall.generation_jobs j "
        "ON j.dataset_id = d.id WHERE d.id = %s GROUP BY d.id", (str(dataset_id),)).fetchone()
    if row is None:
        raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
    return (str(dataset_id), *(int(v) for v in row))


def terrain_version(conn, dataset_id) -> tuple:
    """(terrain name, its SHA-256) of the dataset's configuration, (None, None) without one and
    (name, None) when that name is not registered: what else the map shows depends on."""
    row = conn.execute(
        "SELECT d.config->>'terrain', t.sha256 FROM heimdall.synthetic_datasets d LEFT JOIN "
        "heimdall.terrains t ON t.name = d.config->>'terrain' WHERE d.id = %s",
        (str(dataset_id),)).fetchone()
    return (None, None) if row is None else (row[0], row[1])


def _finite(expr: str) -> str:
    """SQL: ``expr`` is a finite number (NULL, NaN and +-Infinity are not)."""
    return f"({expr} > '-Infinity'::float8 AND {expr} < 'Infinity'::float8)"


# ------------------------------------------------------------------------ quality histograms

@dataclass(frozen=True)
class HistogramSpec:
    column: str        # a column of heimdall.measurement_features
    bins: int          # equal bins between the smallest and largest value; 0: one per integer
    log: bool = False  # bins equal in log10 (values <= 0 cannot be shown)

    def kept(self) -> str:
        """SQL: the sample's value goes into a bin."""
        if self.bins == 0:
            return f"({self.column} IS NOT NULL)"
        return _finite(self.column) + (f" AND {self.column} > 0" if self.log else "")

    def value(self) -> str:
        """SQL: the binned quantity."""
        return f"log({self.column}::float8)" if self.log else f"{self.column}::float8"


QUALITY_HISTOGRAMS = {
    "snr": HistogramSpec("mean_snr_db", 40),
    "gdop": HistogramSpec("gdop", 40, log=True),
    "crb": HistogramSpec("crb_m", 40, log=True),
    "detected": HistogramSpec("num_receivers_detected", 0),
}


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]   # bin edges in data units, len(counts) + 1 (integers: k +- 0.5)
    counts: tuple[int, ...]
    total: int                 # samples of the dataset
    excluded: int              # samples in no bin: no value, infinite, or <= 0 on a log scale
    log: bool

    @property
    def binned(self) -> int:
        return sum(self.counts)


def _edges(spec: HistogramSpec, lo: float, hi: float) -> tuple[float, float, np.ndarray]:
    """The bounds to give width_bucket (widened when every value is the same) and the edges."""
    if spec.bins == 0:
        return lo, hi, np.arange(int(lo), int(hi) + 2) - 0.5
    if hi <= lo:
        pad = 0.05 if spec.log else 0.5
        lo, hi = lo - pad, hi + pad
    edges = np.linspace(lo, hi, spec.bins + 1)
    return lo, hi, 10.0 ** edges if spec.log else edges


def quality_histograms(conn, dataset_id, names=tuple(QUALITY_HISTOGRAMS)) -> dict:
    """{name: Histogram} of the named ``QUALITY_HISTOGRAMS`` over every sample of the dataset."""
    specs = [QUALITY_HISTOGRAMS[n] for n in names]
    ranges = ", ".join(f"count(*) FILTER (WHERE {s.kept()}), min({s.value()}) FILTER (WHERE "
                       f"{s.kept()}), max({s.value()}) FILTER (WHERE {s.kept()})" for s in specs)
    with snapshot(conn):
        row = conn.execute(f"SELECT count(*), {ranges} FROM {FEATURES} WHERE dataset_id = %s",
                           (str(dataset_id),)).fetchone()
        total = row[0]
        found = [row[1 + 3 * i: 4 + 3 * i] for i in range(len(specs))]  # (n, lo, hi) each
        binned = [i for i, (n, _, _) in enumerate(found) if n]
        bounds = {i: _edges(specs[i], found[i][1], found[i][2]) for i in binned}
        counts = {i: np.zeros(len(bounds[i][2]) - 1, np.int64) for i in binned}
        if binned:
            for index, bucket, n in _bin_all(conn, dataset_id, specs, binned, bounds):
                counts[index][bucket] += n
    out = {}
    for i, name in enumerate(names):
        kept = found[i][0]
        edges = bounds[i][2] if i in bounds else np.array([])
        out[name] = Histogram(tuple(float(e) for e in edges),
                              tuple(int(c) for c in counts.get(i, ())), total, total - kept,
                              specs[i].log)
    return out


def _bin_all(conn, dataset_id, specs, binned, bounds):
    """(spec index, bin index, samples) for every non-empty bin, in one scan."""
    params, columns = {"id": str(dataset_id)}, []
    for j, i in enumerate(binned):
        s = specs[i]
        if s.bins == 0:
            expr = f"{s.column}::bigint - %(lo{j})s"
            params[f"lo{j}"] = int(bounds[i][0])
        else:  # the largest value is the upper bound itself: width_bucket puts it past the end
            expr = f"least(width_bucket({s.value()}, %(lo{j})s, %(hi{j})s, {s.bins}), {s.bins}) - 1"
            params[f"lo{j}"], params[f"hi{j}"] = bounds[i][0], bounds[i][1]
        columns.append(f"CASE WHEN {s.kept()} THEN {expr} END AS b{j}")
    keys = [f"b{j}" for j in range(len(binned))]
    sql = (f"SELECT GROUPING({', '.join(keys)}), {', '.join(keys)}, count(*) FROM "
           f"(SELECT {', '.join(columns)} FROM {FEATURES} WHERE dataset_id = %(id)s) v "
           f"GROUP BY GROUPING SETS ({', '.join(f'({k})' for k in keys)})")
    # GROUPING(b0, ..., bm-1) sets a bit for every key NOT grouped in the row's set (b0 is the
    # highest bit); a key's own NULL group holds the samples kept out of its bins.
    m = len(keys)
    full = (1 << m) - 1
    for row in conn.execute(sql, params):
        grouping, n = row[0], row[-1]
        j = next(j for j in range(m) if grouping == full ^ (1 << (m - 1 - j)))
        bucket = row[1 + j]
        if bucket is not None:
            yield binned[j], int(bucket), int(n)


# ------------------------------------------------------------------------ sampled plots

@dataclass(frozen=True)
class Sample:
    """Every ``stride``-th sample of a dataset whose sample indices run 0 .. count - 1."""

    count: int
    stride: int

    @property
    def size(self) -> int:
        return -(-self.count // self.stride)

    def params(self, dataset_id) -> dict:
        return {"id": str(dataset_id), "last": self.count - 1, "stride": self.stride}


def sample_of(conn, dataset_id, limit: int) -> Sample:
    """The evenly spaced sample of at most ``limit`` samples (max(sample_index): an index
    lookup, not a count)."""
    last = conn.execute(f"SELECT max(sample_index) FROM {FEATURES} WHERE dataset_id = %s",
                        (str(dataset_id),)).fetchone()[0]
    count = 0 if last is None else int(last) + 1
    return Sample(count, max(1, -(-count // limit)))


Box = tuple  # (lat_min, lat_max, lon_min, lon_max), degrees


@dataclass(frozen=True)
class MapData:
    tx_lat: np.ndarray            # the sampled transmitters
    tx_lon: np.ndarray
    sample: Sample
    receivers: tuple              # the fixed network: ({name, lat, lon, alt_m}, ...); () if random
    random_rx_lat: np.ndarray     # random receivers: their positions in a sample of samples
    random_rx_lon: np.ndarray
    inner_box: Box                # fixed: the receivers' bounding box; random: the receiver area
    outer_box: Box                # inner_box widened by margin_deg: no transmitter lies outside
    inside_ratio: float
    margin_deg: float
    #: the terrain the dataset's configuration names (``relief.DatasetTerrain``: its grid when
    #: still registered, drawn as shaded relief under the map); None when it names none
    terrain: object = None


def map_boxes(cfg: dict) -> tuple[tuple, Box, Box]:
    """(fixed receivers or (), inner box, outer box) from a dataset's stored configuration:
    the receivers' bounding box (random receivers: their area), and that box widened by
    margin_deg."""
    if cfg["use_random_receivers"]:
        inner = (cfg["area_lat_min"], cfg["area_lat_max"], cfg["area_lon_min"],
                 cfg["area_lon_max"])
        receivers = ()
    else:
        receivers = tuple(dict(r) for r in cfg["receivers"])
        lats, lons = [r["lat"] for r in receivers], [r["lon"] for r in receivers]
        inner = (min(lats), max(lats), min(lons), max(lons))
    m = float(cfg["margin_deg"])
    return receivers, inner, (inner[0] - m, inner[1] + m, inner[2] - m, inner[3] + m)


def map_data(conn, dataset: dict, limit: int = SAMPLE_LIMIT,
             receiver_limit: int = RECEIVER_SAMPLE_LIMIT, with_relief: bool = True) -> MapData:
    """The map's data; ``with_relief`` reads the terrain's grid too (the maps drawn over a
    raster of their own need only its name)."""
    from heimdall_synth.service.report.relief import dataset_terrain

    cfg, dataset_id = dataset["config"], dataset["id"]
    random = bool(cfg["use_random_receivers"])
    with snapshot(conn):
        terrain = dataset_terrain(conn, cfg, with_grid=with_relief)
        sample = sample_of(conn, dataset_id, limit)
        # In sample order: the same dataset always draws the same picture.
        tx = conn.execute(f"SELECT f.tx_latitude, f.tx_longitude FROM {_SAMPLED} ORDER BY g.i",
                          sample.params(dataset_id)).fetchall()
        rx: list = []
        if random and sample.count:
            rx = conn.execute(
                f"SELECT r.lat, r.lon FROM {_SAMPLED} CROSS JOIN LATERAL "
                "unnest(f.rx_lat, f.rx_lon) WITH ORDINALITY AS r(lat, lon, k) ORDER BY g.i, r.k",
                sample_of(conn, dataset_id, receiver_limit).params(dataset_id)).fetchall()
    tx_arr = np.array(tx, dtype=float).reshape(-1, 2)
    rx_arr = np.array(rx, dtype=float).reshape(-1, 2)
    receivers, inner, outer = map_boxes(cfg)
    return MapData(tx_arr[:, 0], tx_arr[:, 1], sample, receivers, rx_arr[:, 0], rx_arr[:, 1],
                   inner, outer, float(cfg["inside_ratio"]), float(cfg["margin_deg"]), terrain)


@dataclass(frozen=True)
class SplitMapData:
    """The split of the map (a pure function of position and the three split fields) and how
    many samples each split holds."""

    map: MapData
    counts: tuple                 # samples in train, validation, test
    cell_m: float
    train: float
    validation: float


def split_map_data(conn, dataset: dict) -> SplitMapData:
    from heimdall_synth.kernel.defaults import SPLITS
    cfg = dataset["config"]
    with snapshot(conn):
        mapped = map_data(conn, dataset, with_relief=False)
        counts = dict(conn.execute(f"SELECT split, count(*) FROM {FEATURES} WHERE "
                                   "dataset_id = %s GROUP BY split",
                                   (str(dataset["id"]),)).fetchall())
    return SplitMapData(mapped, tuple(int(counts.get(k, 0)) for k in range(len(SPLITS))),
                        float(cfg["split_cell_m"]), float(cfg["split_train"]),
                        float(cfg["split_validation"]))


@dataclass(frozen=True)
class LinkPowerGrid:
    """Links that detected the signal, binned by distance (log10 bins) and received power."""

    distance_edges_km: tuple
    power_edges_dbm: tuple
    counts: np.ndarray            # (distance bins, power bins)
    links: int                    # detecting links binned
    samples_read: int
    sample: Sample
    tx_power_dbm: float           # the dataset's configuration, for the free-space line
    frequency_mhz: float
    thresholds_dbm: tuple         # noise floor + min_snr_db of each job that stored samples


def link_power_grid(conn, dataset: dict, limit: int = SAMPLE_LIMIT) -> LinkPowerGrid:
    cfg, dataset_id = dataset["config"], dataset["id"]
    links = (f"SELECT log(l.d::float8) AS d, l.p::float8 AS p FROM {_SAMPLED} CROSS JOIN "
             "LATERAL unnest(f.distance_km, f.rssi_dbm, f.signal_present) AS l(d, p, present) "
             f"WHERE l.present AND l.d > 0 AND {_finite('l.d')} AND {_finite('l.p')}")
    counts = np.zeros((DISTANCE_BINS, POWER_BINS), np.int64)
    d_edges = p_edges = np.array([])
    with snapshot(conn):
        sample = sample_of(conn, dataset_id, limit)
        params = sample.params(dataset_id)
        n, read, d_lo, d_hi, p_lo, p_hi = conn.execute(
            f"SELECT count(*), (SELECT count(*) FROM {_SAMPLED}), min(d), max(d), min(p), "
            f"max(p) FROM ({links}) AS links", params).fetchone()
        if n:
            d_lo, d_hi = _widened(d_lo, d_hi, 0.05)
            p_lo, p_hi = _widened(p_lo, p_hi, 0.5)
            params.update(d_lo=d_lo, d_hi=d_hi, p_lo=p_lo, p_hi=p_hi)
            for di, pi, k in conn.execute(
                    f"SELECT least(width_bucket(d, %(d_lo)s, %(d_hi)s, {DISTANCE_BINS}), "
                    f"{DISTANCE_BINS}) - 1, least(width_bucket(p, %(p_lo)s, %(p_hi)s, "
                    f"{POWER_BINS}), {POWER_BINS}) - 1, count(*) FROM ({links}) AS links "
                    "GROUP BY 1, 2", params):
                counts[di, pi] = k
            d_edges = 10.0 ** np.linspace(d_lo, d_hi, DISTANCE_BINS + 1)
            p_edges = np.linspace(p_lo, p_hi, POWER_BINS + 1)
        thresholds = [r[0] for r in conn.execute(
            "SELECT DISTINCT (config->'config'->>'noise_floor_dbm')::float8 + "
            "(config->'config'->>'min_snr_db')::float8 FROM heimdall.generation_jobs "
            "WHERE dataset_id = %s AND generated > 0 ORDER BY 1", (str(dataset_id),))]
    return LinkPowerGrid(tuple(map(float, d_edges)), tuple(map(float, p_edges)), counts, int(n),
                         int(read), sample, float(cfg["tx_power_dbm"]),
                         float(cfg["frequency_mhz"]), tuple(t for t in thresholds
                                                           if t is not None))


def _widened(lo: float, hi: float, pad: float) -> tuple[float, float]:
    return (lo - pad, hi + pad) if hi <= lo else (lo, hi)


# ------------------------------------------------------------------------ attempts

@dataclass(frozen=True)
class Outcomes:
    """What the dataset's jobs did with their attempts."""

    jobs: int
    attempted: int
    accepted: int                 # samples the jobs stored (sum of generated)
    rejected: dict                # reason -> attempts, in REJECT_REASONS order

    @property
    def total(self) -> int:
        return self.accepted + sum(self.rejected.values())


def outcomes(conn, dataset_id) -> Outcomes:
    """Rejections by reason summed over every job of the dataset, and the accepted samples."""
    with snapshot(conn):
        jobs, attempted, accepted = conn.execute(
            "SELECT count(*), coalesce(sum(attempted), 0), coalesce(sum(generated), 0) FROM "
            "heimdall.generation_jobs WHERE dataset_id = %s", (str(dataset_id),)).fetchone()
        stored = dict(conn.execute(
            "SELECT r.key, sum(r.value::bigint) FROM heimdall.generation_jobs j CROSS JOIN "
            "LATERAL jsonb_each_text(j.rejections) AS r(key, value) WHERE j.dataset_id = %s "
            "GROUP BY r.key", (str(dataset_id),)).fetchall())
    rejected = {k: int(stored.pop(k, 0)) for k in REJECT_REASONS}
    rejected.update({k: int(v) for k, v in sorted(stored.items())})  # a reason added later
    return Outcomes(int(jobs), int(attempted), int(accepted), rejected)
