"""What a job's end says: its final record, the sentence a person can act on, the advice for a
database error, and the cumulative progress text shared by every door."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

ADVICE = {
    "tx_off": "the transmitter is off in 0-20 % of attempts by design (duty cycle); "
              "nothing to relax",
    "min_receivers": "lower min_receivers (now {min_receivers}) or min_snr_db "
                     "(now {min_snr_db:g} dB), or raise tx_power_dbm",
    "min_snr": "lower min_snr_db (now {min_snr_db:g} dB)",
    "gdop": "raise max_gdop (now {max_gdop:g}) or use a network that surrounds the area",
    "crb": "raise max_crb_m (now {max_crb_m}) or remove it",
}


@dataclass
class JobResult:
    job_id: str
    status: str
    stopped_reason: str
    requested: int
    generated: int
    attempted: int
    samples_offset: int
    final_count: int
    rejections: dict
    message: str
    device: str
    duration_s: float
    events: list = field(default_factory=list)
    generated_this_run: int = 0

    @property
    def samples_per_second(self) -> float:
        """Of this run (a resumed job's earlier runs are not in duration_s)."""
        return self.generated_this_run / self.duration_s if self.duration_s > 0 else 0.0


class JobError(RuntimeError):
    """The job failed; it is recorded on the job row with the committed counts."""


def stop_message(reason: str, generated: int, requested: int, attempted: int, rejections: dict,
                 cfg, options: dict) -> str:
    """A sentence a person can act on: what stopped the job and what to relax."""
    if reason == "target_reached":
        return f"Generated all {requested:,} samples in {attempted:,} attempts."
    why = {
        "max_attempts": f"the attempt budget (max_attempts {options['max_attempts']:,}) ran out",
        "stalled": f"{options['max_consecutive_rejections']:,} attempts in a row were rejected",
        "cancelled": "the job was cancelled",
        "failed": "an error stopped it",
        "interrupted": "its process stopped (resume it to reach the original target)",
    }[reason]
    text = (f"Stopped with {generated:,} of {requested:,} samples after {attempted:,} "
            f"attempts: {why}.")
    rejected = {k: v for k, v in rejections.items() if v}
    if rejected and reason in ("max_attempts", "stalled"):
        top = max(rejected, key=rejected.get)
        share = rejected[top] / max(attempted, 1)
        values = {**cfg.to_dict(), "max_crb_m": cfg.max_crb_m}
        text += (f" Most rejections were '{top}' ({share:.0%} of attempts): "
                 f"{ADVICE[top].format(**values)}.")
    return text


#: What to do about a database error that stopped a job, by SQLSTATE (prefix).
DATABASE_ADVICE = (
    ("53100", "The database server's disk is full: free space there (or give the tablespace "
              "more room)"),
    ("53", "The database server ran out of a resource (memory, connections): relieve it"),
    ("57014", "The server cancelled a statement (it ran past statement_timeout, or someone "
              "called pg_cancel_backend): raise or lift the timeout (ALTER DATABASE ... SET "
              "statement_timeout)"),
    ("57P", "The database server ended the job's connection (shut down, restarted or an "
            "administrator terminated it): wait until it answers"),
    ("08", "The connection to the database was lost: wait until it answers"),
)


def database_advice(error: BaseException) -> str:
    """' <what to do>, then resume the job ...' for a database error, else ''. A batch commits
    whole or not at all, so the resume continues exactly after the last committed one."""
    code = getattr(error, "sqlstate", None)
    if code is None and isinstance(error, psycopg.OperationalError):
        code = "08"  # lost without a reply: no SQLSTATE
    for prefix, text in DATABASE_ADVICE:
        if code is not None and code.startswith(prefix):
            return (f" {text}, then resume the job: nothing committed is lost, and it "
                    "continues from the last committed batch.")
    return ""


#: The record of a job stopped before it ran a batch, by its status (the loop and the runner).
UNSTARTED_MESSAGE = {
    "cancelled": "Cancelled before it started; nothing more was generated.",
    "interrupted": ("The service stopped before this job started; resume it to reach the "
                    "original target."),
}


def progress_text(offset: int, generated: int, requested: int) -> str:
    total = offset + generated
    text = f"{total:,} / {offset + requested:,}"
    return text + (f" (continued from {offset:,})" if offset else "")
