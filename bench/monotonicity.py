"""The operators' physics check: how often a farther detecting receiver beats a nearer one.

    python bench/monotonicity.py [--attempts 200000] [--record]

The replaced system flagged a sample when, among its detecting receivers, one farther from the
transmitter received more than 12 dB more than a nearer one, and expected 3-5 % of samples to
be flagged. This script measures the rate on accepted samples, per pair of detecting receivers
and per sample, with the default configuration, with each random or geometric term switched off
in turn, and on real terrain (matplotlib's Jacksboro elevation model, a network of seven
stations over it, with and without the terrain). With --record the table goes into
docs/MODEL.md (the section between the "monotonicity" markers), where the figures are explained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, this folder heads sys.path and this file would shadow the `kernel` package.
sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numpy as np  # noqa: E402

from heimdall_synth.kernel import GenerationConfig, run_attempts  # noqa: E402
from bench.results import replace_section  # noqa: E402

MARGIN_DB = 12.0
MODEL_DOC = Path(__file__).resolve().parent.parent / "docs" / "MODEL.md"

TERMS = ("shadowing", "fading", "clutter", "antenna_patterns", "polarization", "diffraction",
         "meteorological", "sporadic_e")

#: Seven stations over the Jacksboro elevation model (36.45-36.73 N, 84.41-84.08 W): ridge
#: tops, valley floors and slopes, ground heights from the grid.
JACKSBORO_STATIONS = [
    {"name": f"s{k}", "lat": lat, "lon": lon}
    for k, (lat, lon) in enumerate([(36.62, -84.20), (36.55, -84.30), (36.66, -84.15),
                                    (36.52, -84.14), (36.70, -84.35), (36.58, -84.22),
                                    (36.50, -84.37)])
]


def jacksboro_grid():
    from matplotlib.cbook import get_sample_data
    from heimdall_synth.kernel.terrain import ElevationGrid
    dem = get_sample_data("jacksboro_fault_dem.npz")
    return ElevationGrid.from_array(dem["elevation"], float(dem["ymin"]), float(dem["xmin"]),
                                    float(dem["dy"]), float(dem["dx"]))


def flagged_rates(batch, margin_db: float = MARGIN_DB) -> tuple[float, float, int]:
    """(per pair, per sample, samples) over accepted samples: the share of pairs of detecting
    receivers where the farther one receives more than ``margin_db`` above the nearer one, and
    the share of samples with at least one such pair."""
    keep = batch.valid
    det = batch.signal_present[keep]
    rssi = np.where(det, batch.rssi_dbm[keep], np.nan)
    dist = np.where(det, batch.distance_km[keep], np.nan)
    # pairs (a, b) with a nearer than b: b beats a by more than the margin
    nearer = dist[:, :, None] < dist[:, None, :]
    both = det[:, :, None] & det[:, None, :] & nearer
    with np.errstate(invalid="ignore"):
        beaten = both & (rssi[:, None, :] - rssi[:, :, None] > margin_db)
    pairs = both.sum()
    return (beaten.sum() / pairs if pairs else float("nan"),
            beaten.any(axis=(1, 2)).mean() if keep.any() else float("nan"), int(keep.sum()))


def cases(grid):
    """(name, overrides, terrain) of every measured configuration."""
    yield "defaults (all terms on)", {}, None
    for term in TERMS:
        yield f"defaults, {term.replace('_', ' ')} off", {f"enable_{term}": False}, None
    off = {f"enable_{t}": False for t in TERMS if t != "diffraction"}
    yield "defaults, every random term off (distance, diffraction, geometry only)", off, None
    # The same stations (ground heights from the grid) on the smooth earth and on the terrain.
    network = {"margin_deg": 0.02, "receivers": [
        {**s, "alt_m": grid.height_at(s["lat"], s["lon"])} for s in JACKSBORO_STATIONS]}
    on_terrain = {**network, "terrain": "jacksboro"}
    yield "Jacksboro network, smooth earth", network, None
    yield "Jacksboro network, on its terrain", on_terrain, grid
    yield ("Jacksboro network, on its terrain, shadowing and fading off",
           {**on_terrain, "enable_shadowing": False, "enable_fading": False}, grid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=200_000)
    ap.add_argument("--record", action="store_true", help="write the table into docs/MODEL.md")
    args = ap.parse_args()
    grid = jacksboro_grid()
    rows = ["| configuration | accepted samples | pairs flagged | samples flagged |",
            "|---|---|---|---|"]
    for name, overrides, terrain in cases(grid):
        cfg = GenerationConfig.from_dict(overrides)
        batch = run_attempts(cfg, 1, 0, args.attempts, terrain=terrain)
        per_pair, per_sample, n = flagged_rates(batch)
        rows.append(f"| {name} | {n:,} | {100 * per_pair:.1f} % | {100 * per_sample:.1f} % |")
        print(rows[-1], flush=True)
    if args.record:
        replace_section(MODEL_DOC, "monotonicity", [
            f"Measured with `python bench/monotonicity.py --attempts {args.attempts}` "
            f"(seed 1; a farther detecting receiver more than {MARGIN_DB:g} dB above a nearer "
            "one, over accepted samples):", "", *rows], "")
        print(f"recorded in {MODEL_DOC}")


if __name__ == "__main__":
    main()
