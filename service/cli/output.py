"""What the command line prints: records, tables, the progress of a job and its summary."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import uuid
from datetime import datetime

def plain(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "items"):
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def emit_json(obj) -> None:
    print(json.dumps(obj, default=plain, indent=2, sort_keys=True))


def when(value) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def print_fields(record: dict, width: int = 20) -> None:
    """``key: value`` lines; times in local time, objects as one line of JSON."""
    for key, value in record.items():
        if isinstance(value, datetime):
            value = when(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=plain, sort_keys=True)
        print(f"{key:>{width}}: {value}")


def table(headers, rows) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
    for r in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


class Progress:
    """Draws a job's events: a one-line bar on a terminal, plain lines otherwise.

    The rate (and so the ETA) is measured from the first committed batch on: what came before
    it (the kernel's compilation on a first run, the pipeline filling) says nothing about the
    speed of the rest. The percentage is of the job's own target; the text beside it is the
    dataset's cumulative count ("505 / 1,005 (continued from 5)")."""

    def __init__(self, enabled: bool, bar: bool):
        self.enabled, self.bar = enabled, bar
        self.interval = 0.1 if bar else 1.0
        self.final, self.last_draw, self.drawn = None, 0.0, False
        self.t0 = self.base = None  # time and count at the first committed batch

    def __call__(self, ev: dict) -> None:
        if ev["type"] == "final":
            self.final = ev
            if self.drawn and self.bar:
                sys.stderr.write("\n")
            return
        if not self.enabled:
            return
        if ev["type"] == "status":
            print(f"job {ev['job_id']} is {ev['status']}: "
                  f"{ev.get('message') or 'waiting for another job on this dataset'}",
                  file=sys.stderr)
        elif ev["type"] == "batch":
            now = time.monotonic()
            if self.t0 is None:
                self.t0, self.base = now, ev["generated"]
            if now - self.last_draw >= self.interval or ev["generated"] >= ev["requested"]:
                self.last_draw = now
                self._draw(ev, now)

    def rate(self, generated: int, now: float) -> float | None:
        """Samples per second since the first committed batch; None before a second one."""
        if self.t0 is None or now <= self.t0 or generated <= self.base:
            return None
        return (generated - self.base) / (now - self.t0)

    def _draw(self, ev: dict, now: float) -> None:
        gen, req = ev["generated"], ev["requested"]
        rate = self.rate(gen, now)
        eta = 0.0 if gen >= req else (req - gen) / rate if rate else math.inf
        eta_text = (f"{int(eta) // 3600}:{int(eta) // 60 % 60:02d}:{int(eta) % 60:02d}"
                    if math.isfinite(eta) else "?")
        pct = 100.0 * gen / max(req, 1)
        acceptance = 100.0 * gen / max(ev["attempted"], 1)
        rate_text = f"{rate:,.0f}" if rate else "?"
        text = (f"{ev['message']} {pct:5.1f}% {rate_text} samples/s ETA {eta_text} "
                f"acceptance {acceptance:.1f}%")
        if self.bar:
            filled = int(20 * gen / max(req, 1))
            line = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
            sys.stderr.write("\r\x1b[K" + line[:shutil.get_terminal_size().columns - 1])
            self.drawn = True
        else:
            sys.stderr.write(f"progress: batch {ev['batch']}: {text}\n")
        sys.stderr.flush()


def print_summary(r: dict) -> None:
    rejected = ", ".join(f"{k} {v:,}" for k, v in r["rejections"].items() if v) or "none"
    rate = 100.0 * r["generated"] / max(r["attempted"], 1)
    print_fields({
        "job": r["job_id"], "status": r["status"], "stopped_reason": r["stopped_reason"],
        "requested": f"{r['requested']:,}", "generated": f"{r['generated']:,}",
        "attempted": f"{r['attempted']:,} (success rate {rate:.1f}%)",
        "rejections": rejected, "samples_offset": f"{r['samples_offset']:,}",
        "final count": f"{r['final_count']:,}" if r["final_count"] >= 0 else "unknown",
        "device": r["device"],
        "duration": f"{r['duration_s']:.2f} s ({r['samples_per_second']:,.1f} samples/s)",
        "message": r["message"]}, width=15)


def print_jobs(jobs) -> None:
    table(["ID", "DATASET", "KIND", "STATUS", "GENERATED", "REASON", "CREATED"],
           [[j["id"], j["dataset_id"], j["kind"], j["status"],
             f"{j['generated']:,} / {j['requested']:,}", j["stopped_reason"] or "-",
             when(j["created_at"])] for j in jobs])


def fail(args, code: int, kind: str, field, message: str) -> int:
    print(f"error: {field}: {message}" if field else f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        emit_json({"error": kind, "field": field, "message": message})
    return code
