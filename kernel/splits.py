"""Train / validation / test splits by spatial cell (docs/TRAINING.md).

A sample's split is a pure function of its transmitter's position, the dataset's cell size and
its split fractions: the earth is cut into cells of about ``cell_m`` metres, each cell is
hashed, and the hash, as a number in [0, 1), falls into the train, validation or test share.
Every sample in a cell lands in the same split, so transmitters a few metres apart never sit on
both sides of a train/test boundary, and a model's test error is not flattered by
near-duplicates. The split depends on nothing else (not the seed, the attempt or the order of
generation): expanding a dataset never moves an existing sample, and two datasets with the same
cell size and fractions split the map the same way.

The cells: rows of ``cell_m / 111,320`` degrees of latitude; within row i, columns of
``cell_m / (111,320 cos(latitude of the row's middle))`` degrees of longitude. The hash works
on integers below 2^31 with products below 2^63, so ``sql/007_splits.sql`` computes the same
split in SQL (for rows written before splits existed).
"""

from __future__ import annotations

import numpy as np

from .defaults import SPLITS

SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}
METRES_PER_DEGREE = 111_320.0
_P = 2_147_483_647  # 2^31 - 1


def cell_of(lat_deg, lon_deg, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The cell (row, column) of each position, int64."""
    lat = np.asarray(lat_deg, np.float64)
    lon = np.asarray(lon_deg, np.float64)
    row = np.floor(lat * METRES_PER_DEGREE / cell_m)
    middle = np.radians((row + 0.5) * cell_m / METRES_PER_DEGREE)
    col = np.floor(lon * METRES_PER_DEGREE * np.cos(middle) / cell_m)
    return row.astype(np.int64), col.astype(np.int64)


def cell_hash(row, col) -> np.ndarray:
    """A hash of each cell in [0, 2^31 - 1): Lehmer steps and xor-shifts modulo 2^31 - 1."""
    a = np.mod(np.asarray(row, np.int64), _P)
    b = np.mod(np.asarray(col, np.int64), _P)
    h = (a * 48_271 + 1) % _P
    h = (h + b) % _P
    h = (h * 48_271) % _P
    h ^= h >> 15
    h = (h * 69_621) % _P
    h ^= h >> 13
    h = (h * 48_271) % _P
    h ^= h >> 16
    return h


def split_of(lat_deg, lon_deg, cell_m: float, train: float, validation: float) -> np.ndarray:
    """The split code (0 train, 1 validation, 2 test) of each transmitter position, int16."""
    u = cell_hash(*cell_of(lat_deg, lon_deg, cell_m)) / _P
    return np.where(u < train, 0, np.where(u < train + validation, 1, 2)).astype(np.int16)
