"""Running quality aggregates of a dataset, kept in synthetic_datasets.quality_metrics."""

from __future__ import annotations

import numpy as np

class QualityAggregates:
    """Running sums of a dataset's sample quality, kept in synthetic_datasets.quality_metrics.

    Only finite values are summed, and each field counts its finite values: a valid sample's
    CRB is +inf when exactly three receivers detect and the transmitter sits on their
    circumcircle (inverted about the transmitter, u_i / d_i fall on a line, so RSS with unknown
    power cannot fix the position though the GDOP geometry is fine)."""

    FIELDS = ("gdop", "hdop", "crb_m", "mean_snr_db", "overall_confidence")

    def __init__(self, stored: dict | None):
        self.m = dict(stored or {})
        self.m.setdefault("samples", 0)
        self.m.setdefault("sum_detected_receivers", 0)
        for f in self.FIELDS:
            self.m.setdefault(f"sum_{f}", 0.0)
            self.m.setdefault(f"finite_{f}", 0)
        self.m.setdefault("min_gdop", None)
        self.m.setdefault("max_gdop", None)

    @classmethod
    def partial(cls, batch, rows: np.ndarray) -> dict:
        """The sums of the samples ``rows`` of ``batch`` (computed by the producer)."""
        part = {"samples": len(rows),
                "sum_detected_receivers": int(batch.n_detected[rows].sum())}
        for f in cls.FIELDS:
            values = getattr(batch, f)[rows]
            finite = values[np.isfinite(values)]
            part[f"sum_{f}"] = float(finite.sum())
            part[f"finite_{f}"] = int(finite.size)
        gdop = batch.gdop[rows]
        gdop = gdop[np.isfinite(gdop)]
        part["min_gdop"] = float(gdop.min()) if gdop.size else None
        part["max_gdop"] = float(gdop.max()) if gdop.size else None
        return part

    def sums(self) -> dict:
        """The sums alone, in the form ``partial`` makes (to merge into another)."""
        keys = ["samples", "sum_detected_receivers", "min_gdop", "max_gdop"]
        keys += [f"{kind}_{f}" for f in self.FIELDS for kind in ("sum", "finite")]
        return {k: self.m[k] for k in keys}

    def add(self, part: dict) -> dict:
        """Merge a batch's partial sums; return a COPY of the metrics to store.

        A copy, never the live dict: the metrics of batch k are written by an ingest lane while
        batch k+1 is already being added here, and must describe batch k's rows exactly."""
        for key, value in part.items():
            if key in ("min_gdop", "max_gdop"):
                if value is not None:
                    pick = min if key == "min_gdop" else max
                    self.m[key] = value if self.m[key] is None else pick(value, self.m[key])
            else:
                self.m[key] += value
        for f in self.FIELDS:
            count = self.m[f"finite_{f}"]
            self.m[f"mean_{f}"] = self.m[f"sum_{f}"] / count if count else None
        samples = self.m["samples"]
        self.m["mean_detected_receivers"] = (self.m["sum_detected_receivers"] / samples
                                             if samples else None)
        return dict(self.m)
