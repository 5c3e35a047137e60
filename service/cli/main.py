"""The ``heimdall-synth`` command line (SPEC 11).

Every option that sets a request field is generated from ``kernel.defaults.PARAMETERS``: field
``foo_bar`` is ``--foo-bar``. Only the options the user gave reach the request (argparse
``SUPPRESS``), so ``GenerateRequest`` applies the defaults and does all validation. Exit codes:
0 done, 1 job not completed (or validation failed), 2 invalid field, 3 not found, 4 conflict,
130 Ctrl-C (143 SIGTERM). ``--json`` prints one JSON object on stdout and no progress.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.kernel.defaults import PARAMETERS
from heimdall_synth.service.engine.request import ConflictError, GenerateRequest, NotFoundError

_INT = re.compile(r"[+-]?[0-9]+")
_JSON_KINDS = ("receivers", "dist")
_SCOPE_TITLES = {"request": "request", "data": "data (define the dataset; an expansion may not "
                 "change them without --allow-parameter-override)", "filter": "filters",
                 "job": "job execution"}


# ----------------------------------------------------------------------------- options

def _option_help(p) -> str:
    if p.kind == "receivers":
        default = f"the {len(p.default)} default stations"
    elif p.kind == "dist":
        default = json.dumps(p.default)
    else:
        default = "automatic" if p.default is None else p.default
    extra = " JSON text, or @FILE." if p.kind in _JSON_KINDS else ""
    extra += " 'null' unsets it." if p.nullable and p.kind != "bool" else ""
    if p.lo is not None and p.kind in ("int", "float"):
        extra += f" Range {'(' if p.lo_open else '['}{p.lo:g}, {p.hi:g}]."
    return f"{p.doc} (default: {default}).{extra}".replace("%", "%%")


def _add_parameter_options(parser, exclude=()) -> None:
    """One option per table field (none hand-written); values stay text until _convert."""
    groups = {}
    for p in PARAMETERS:
        if p.name in exclude:
            continue
        group = groups.get(p.scope) or groups.setdefault(
            p.scope, parser.add_argument_group(_SCOPE_TITLES[p.scope]))
        flag = "--" + p.name.replace("_", "-")
        kw = {"dest": p.name, "default": argparse.SUPPRESS, "help": _option_help(p)}
        if p.kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            metavar = "{" + ",".join(p.choices) + "}" if p.kind == "choice" else p.kind.upper()
            group.add_argument(flag, metavar=metavar, **kw)


def _convert(p, text):
    """Command-line text to the JSON value of field ``p``; errors name the field."""
    if isinstance(text, bool):
        return text
    if p.nullable and text.strip().lower() in ("null", "none"):
        return None
    if p.kind == "int":
        if not _INT.fullmatch(text.strip()):
            raise ConfigError(p.name, f"must be an integer, got {text!r}")
        return int(text)
    if p.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(p.name, f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(p.name, f"must be a finite number, got {text!r}")
        return value
    if p.kind in _JSON_KINDS:
        try:
            text = Path(text[1:]).read_text() if text.startswith("@") else text
            return json.loads(text)
        except OSError as exc:
            raise ConfigError(p.name, f"cannot read {text[1:]}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(p.name, f"must be JSON text: {exc}") from None
    return text


def _request_dict(args) -> dict:
    """The fields of --request FILE, overridden by the options actually given."""
    given = {}
    if getattr(args, "request", None):
        try:
            text = sys.stdin.read() if args.request == "-" else Path(args.request).read_text()
            given = json.loads(text)
        except OSError as exc:
            raise ConfigError("request", f"cannot read {args.request}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError("request", f"{args.request} is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ConfigError("request", f"{args.request} must hold a JSON object")
    for p in PARAMETERS:
        if p.name in vars(args):
            given[p.name] = _convert(p, getattr(args, p.name))
    return given


def _positive_int(name, text) -> int:
    if not _INT.fullmatch(text.strip()) or int(text) < 1:
        raise ConfigError(name, f"must be a positive integer, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand: the copy on each subparser
    # has SUPPRESS defaults, so it only overrides what the main parser set when it is given.
    def common(suppress):
        p = argparse.ArgumentParser(add_help=False)
        d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
        p.add_argument("--database-url", default=d(None),
                       help="PostgreSQL URL (default: $DATABASE_URL, else the embedded server)")
        p.add_argument("--json", action="store_true", default=d(False),
                       help="print one JSON object on stdout, no progress")
        p.add_argument("-v", "--verbose", action="store_true", default=d(False),
                       help="diagnostic log lines (SPEC 12) on stderr")
        p.add_argument("--threads", default=d(None), help="kernel threads for a job")
        return p

    sub_common = common(True)
    parser = argparse.ArgumentParser(prog="heimdall-synth", parents=[common(False)],
                                     description="Synthetic RF localization datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help, **kw):
        p = sub.add_parser(name, help=help, description=help, parents=[sub_common], **kw)
        p.set_defaults(func=func)
        return p

    gen = command("generate", cmd_generate, "create a dataset and generate its samples")
    gen.add_argument("--request", metavar="FILE", help="JSON request object ('-': stdin); "
                     "options override its fields")
    _add_parameter_options(gen, exclude=("expand_dataset_id",))
    exp = command("expand", cmd_expand, "append new samples to a dataset")
    exp.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    exp.add_argument("--request", metavar="FILE", help="JSON request object ('-': stdin)")
    _add_parameter_options(exp, exclude=("name", "description", "expand_dataset_id"))

    ds = command("datasets", cmd_datasets, "list datasets (metadata and actual counts)")
    ds_sub = ds.add_subparsers(dest="action", metavar="ACTION")
    ds_show = ds_sub.add_parser("show", help="one dataset: config, quality, jobs",
                                parents=[sub_common])
    ds_show.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    jobs = command("jobs", cmd_jobs, "list jobs")
    jobs.add_argument("--dataset", metavar="DATASET", help="only this dataset's (id or name)")
    jobs_sub = jobs.add_subparsers(dest="action", metavar="ACTION")
    jobs_show = jobs_sub.add_parser("show", help="one job", parents=[sub_common])
    jobs_show.add_argument("job", metavar="JOB", help="job id")

    command("validate", cmd_validate, "check counts, index density and duplicates"
            ).add_argument("dataset", metavar="DATASET", help="dataset id or name")
    report = command("report", cmd_report, "write a dataset's report: its plots as PNG files")
    report.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    report.add_argument("--out", metavar="DIR", required=True, help="folder for the PNG files "
                        "(created if missing; files of the same names are replaced)")
    export = command("export", cmd_export, "write a dataset to a Parquet or NPZ file for "
                     "training (streamed: memory does not grow with the dataset)")
    export.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    export.add_argument("--format", metavar="{parquet,npz}", default=None, help="file format "
                        "(default: from --out's extension, else parquet)")
    export.add_argument("--out", metavar="PATH", help="file to write (default: "
                        "<dataset name>.<format> in the current folder)")
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    command("cancel", cmd_cancel, "ask a job to stop after its current batch"
            ).add_argument("job", metavar="JOB", help="job id")
    command("resume", cmd_resume, "continue a stopped job to its original target"
            ).add_argument("job", metavar="JOB", help="job id")
    srv = command("serve", cmd_serve, "serve the HTTP API (waitress; loopback unless a token "
                  "is set in HEIMDALL_SYNTH_API_TOKEN)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                     "127.0.0.1; any other needs HEIMDALL_SYNTH_API_TOKEN)")
    srv.add_argument("--port", default="8000", help="port (default 8000)")
    srv.add_argument("--workers", default=None, help="jobs run at once (default 2)")
    db = command("db", None, "database maintenance")
    db_sub = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="apply the SQL migrations", parents=[sub_common]
                      ).set_defaults(func=cmd_db_upgrade)
    return parser


# ----------------------------------------------------------------------------- output

def _plain(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "items"):
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _emit_json(obj) -> None:
    print(json.dumps(obj, default=_plain, indent=2, sort_keys=True))


def _when(value) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _print_fields(record: dict, width: int = 20) -> None:
    """``key: value`` lines; times in local time, objects as one line of JSON."""
    for key, value in record.items():
        if isinstance(value, datetime):
            value = _when(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=_plain, sort_keys=True)
        print(f"{key:>{width}}: {value}")


def _table(headers, rows) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
    for r in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


class Progress:
    """Draws run_job's events: a one-line bar on a terminal, plain lines otherwise."""

    def __init__(self, enabled: bool, bar: bool):
        self.enabled, self.bar = enabled, bar
        self.interval = 0.1 if bar else 1.0
        self.final, self.last_draw, self.drawn = None, 0.0, False
        self.t0, self.base = time.monotonic(), 0

    def __call__(self, ev: dict) -> None:
        if ev["type"] == "final":
            self.final = ev
            if self.drawn and self.bar:
                sys.stderr.write("\n")
            return
        if not self.enabled:
            return
        if ev["type"] == "status":
            print(f"job {ev['job_id']} is {ev['status']}: waiting for another job on this "
                  "dataset", file=sys.stderr)
        elif ev["type"] == "progress":
            self.t0, self.base = time.monotonic(), ev["generated"]
        elif ev["type"] == "batch":
            now = time.monotonic()
            if now - self.last_draw >= self.interval or ev["generated"] >= ev["requested"]:
                self.last_draw = now
                self._draw(ev, now)

    def _draw(self, ev: dict, now: float) -> None:
        gen, req = ev["generated"], ev["requested"]
        rate = (gen - self.base) / max(now - self.t0, 1e-6)
        eta = (req - gen) / rate if rate > 0 else math.inf
        eta_text = (f"{int(eta) // 3600}:{int(eta) // 60 % 60:02d}:{int(eta) % 60:02d}"
                    if math.isfinite(eta) else "?")
        pct = 100.0 * gen / max(req, 1)
        acceptance = 100.0 * gen / max(ev["attempted"], 1)
        text = (f"{ev['message']} {pct:5.1f}% {rate:,.0f} samples/s ETA {eta_text} "
                f"acceptance {acceptance:.1f}%")
        if self.bar:
            filled = int(20 * gen / max(req, 1))
            line = f"[{'#' * filled}{'.' * (20 - filled)}] {text}"
            sys.stderr.write("\r\x1b[K" + line[:shutil.get_terminal_size().columns - 1])
            self.drawn = True
        else:
            sys.stderr.write(f"progress: batch {ev['batch']}: {text}\n")
        sys.stderr.flush()


def _print_summary(r: dict) -> None:
    rejected = ", ".join(f"{k} {v:,}" for k, v in r["rejections"].items() if v) or "none"
    rate = 100.0 * r["generated"] / max(r["attempted"], 1)
    _print_fields({
        "job": r["job_id"], "status": r["status"], "stopped_reason": r["stopped_reason"],
        "requested": f"{r['requested']:,}", "generated": f"{r['generated']:,}",
        "attempted": f"{r['attempted']:,} (success rate {rate:.1f}%)",
        "rejections": rejected, "samples_offset": f"{r['samples_offset']:,}",
        "final count": f"{r['final_count']:,}" if r["final_count"] >= 0 else "unknown",
        "device": r["device"],
        "duration": f"{r['duration_s']:.2f} s ({r['samples_per_second']:,.1f} samples/s)",
        "message": r["message"]}, width=15)


# ----------------------------------------------------------------------------- running

@contextmanager
def _database(args):
    """The server (started if embedded), migrated, with abandoned jobs marked interrupted;
    always closed/stopped on the way out (errors, Ctrl-C and SIGTERM included)."""
    from heimdall_synth.service.storage.database import connect, open_database
    from heimdall_synth.service.storage.jobs import recover_interrupted
    from heimdall_synth.service.storage.migrations import upgrade
    db = open_database(args.database_url)
    try:
        conn = connect(db.url, autocommit=True)
        try:
            args.applied = upgrade(conn)
            for job_id in recover_interrupted(conn):
                print(f"job {job_id} was left running by a process that ended: marked "
                      f"interrupted (heimdall-synth resume {job_id})", file=sys.stderr)
            yield db.url, conn
        finally:
            conn.close()
    finally:
        db.close()


def _run_foreground(args, url, conn, job_id) -> int:
    """run_job in a worker thread so that Ctrl-C/SIGTERM reach this one and can cancel it."""
    from heimdall_synth.service.engine.loop import JobError, run_job
    from heimdall_synth.service.storage.jobs import get_job
    progress = Progress(not args.json, sys.stderr.isatty() and not args.verbose)
    cancel, done, box = threading.Event(), threading.Event(), {}

    def work():
        try:
            box["result"] = run_job(url, job_id, threads=args.threads, cancel=cancel,
                                    on_event=progress)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the main thread
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=work, name="heimdall-job", daemon=True)
    worker.start()
    stopped_by = None
    while not done.is_set():  # not Thread.join: an interrupted join can lose the thread state
        try:
            done.wait(0.2)
        except (KeyboardInterrupt, SystemExit) as exc:
            if stopped_by is not None:
                raise  # a second interrupt: stop waiting; the job is marked interrupted later
            stopped_by = 130 if isinstance(exc, KeyboardInterrupt) else 143
            cancel.set()
            print("\ncancelling: the job stops after its current batch (again to abort)",
                  file=sys.stderr)
    error, final = box.get("error"), progress.final
    if error is not None and not isinstance(error, JobError):
        raise error
    if final is None:  # refused before it started (already completed, run elsewhere)
        return _fail(args, 1, "job_refused", "job_id", str(error))
    if args.json:
        _emit_json({**get_job(conn, job_id), "result": final})
    else:
        _print_summary(final)
    if stopped_by is not None:
        return stopped_by
    if final["status"] != "completed":
        print(f"error: job {final['status']} ({final['stopped_reason']}): {final['message']}",
              file=sys.stderr)
        return 1
    return 0


def _start(args, url, conn, request: GenerateRequest) -> int:
    from heimdall_synth.service.storage.jobs import create_job
    created = create_job(conn, request)
    if not args.json:
        print(f"{created['kind']} job {created['job_id']} on dataset {created['dataset_id']}")
        for field, v in created["overrides"].items():
            print(f"  override {field}: dataset {v['dataset']!r}, this job {v['job']!r}")
    return _run_foreground(args, url, conn, created["job_id"])


def cmd_generate(args) -> int:
    request = GenerateRequest.from_dict(_request_dict(args))  # refused before any database work
    if request.is_expansion:
        raise ConfigError("expand_dataset_id", "use 'heimdall-synth expand DATASET'")
    with _database(args) as (url, conn):
        return _start(args, url, conn, request)


def cmd_expand(args) -> int:
    from heimdall_synth.service.storage.jobs import find_dataset
    given = _request_dict(args)
    with _database(args) as (url, conn):
        given["expand_dataset_id"] = str(find_dataset(conn, args.dataset)["id"])
        return _start(args, url, conn, GenerateRequest.from_dict(given))


def cmd_resume(args) -> int:
    from heimdall_synth.service.storage.jobs import prepare_resume, uuid_of
    job_id = uuid_of(args.job, "job_id")
    with _database(args) as (url, conn):
        prepare_resume(conn, job_id)
        return _run_foreground(args, url, conn, job_id)


def cmd_cancel(args) -> int:
    from heimdall_synth.service.storage.jobs import request_cancel, uuid_of
    job_id = uuid_of(args.job, "job_id")
    with _database(args) as (_, conn):
        job = request_cancel(conn, job_id)
    if args.json:
        _emit_json(job)
    else:
        print(f"cancel requested for job {job_id} ({job['status']}); it stops after its "
              "current batch")
    return 0


def cmd_datasets(args) -> int:
    from heimdall_synth.service.storage.jobs import find_dataset, list_datasets, list_jobs
    with _database(args) as (_, conn):
        if args.action == "show":
            ds = find_dataset(conn, args.dataset)
            jobs = list_jobs(conn, ds["id"])
            if args.json:
                _emit_json({**ds, "jobs": jobs})
                return 0
            config, quality = ds.pop("config"), ds.pop("quality_metrics")
            _print_fields(ds)
            print("config:")
            _print_fields(dict(sorted(config.items())), width=24)
            print("quality_metrics:")
            _print_fields({k: f"{v:.6g}" if isinstance(v, float) else v
                           for k, v in sorted(quality.items())}, width=24)
            print("jobs:")
            _print_jobs(jobs)
            return 0
        rows = list_datasets(conn)
    if args.json:
        _emit_json({"datasets": rows})
        return 0
    _table(["ID", "NAME", "TYPE", "METADATA", "ACTUAL", "CREATED"],
           [[r["id"], r["name"], r["dataset_type"], f"{r['num_samples']:,}",
             f"{r['actual_count']:,}" + ("" if r["actual_count"] == r["num_samples"] else " !"),
             _when(r["created_at"])] for r in rows])
    return 0


def _print_jobs(jobs) -> None:
    _table(["ID", "DATASET", "KIND", "STATUS", "GENERATED", "REASON", "CREATED"],
           [[j["id"], j["dataset_id"], j["kind"], j["status"],
             f"{j['generated']:,} / {j['requested']:,}", j["stopped_reason"] or "-",
             _when(j["created_at"])] for j in jobs])


def cmd_jobs(args) -> int:
    from heimdall_synth.service.storage.jobs import find_dataset, get_job, list_jobs, uuid_of
    job_id = uuid_of(args.job, "job_id") if args.action == "show" else None
    with _database(args) as (_, conn):
        if job_id:
            job = get_job(conn, job_id)
            _emit_json(job) if args.json else _print_fields(job, width=22)
            return 0
        dataset_id = find_dataset(conn, args.dataset)["id"] if args.dataset else None
        jobs = list_jobs(conn, dataset_id)
    if args.json:
        _emit_json({"jobs": jobs})
    else:
        _print_jobs(jobs)
    return 0


def cmd_validate(args) -> int:
    from heimdall_synth.service.storage.jobs import find_dataset, validate_dataset
    with _database(args) as (_, conn):
        report = validate_dataset(conn, find_dataset(conn, args.dataset)["id"])
    _emit_json(report) if args.json else _print_fields(report)
    return 0 if report["ok"] else 1


def cmd_report(args) -> int:
    """Every plot of the report as DIR/<plot>.png; prints the files written."""
    from heimdall_synth.service.storage.jobs import find_dataset
    from heimdall_synth.service.report.render import write_report
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    with _database(args) as (_, conn):
        dataset = find_dataset(conn, args.dataset)
        try:
            paths = write_report(conn, dataset["id"], out)
        except OSError as exc:
            raise ConfigError("out", f"cannot write to {out}: {exc.strerror or exc}") from None
    if args.json:
        _emit_json({"dataset_id": dataset["id"], "name": dataset["name"],
                    "files": [str(p) for p in paths]})
    else:
        print("\n".join(str(p) for p in paths))
    return 0


def cmd_export(args) -> int:
    """The dataset as one file, from one snapshot; progress on stderr, the file's path on
    stdout (or the summary with --json)."""
    from heimdall_synth.service.export.writers import FORMATS, check_format, export_file
    suffix = Path(args.out).suffix.lstrip(".") if args.out else ""
    fmt = check_format(args.format or (suffix if suffix in FORMATS else "parquet"))
    t0, last = time.monotonic(), {"at": 0.0, "done": None}

    def progress(phase, done, total):  # at most once a second, and the end of each phase
        now = time.monotonic()
        if args.json or (phase, done) == last["done"] or (now - last["at"] < 1.0
                                                          and done < total):
            return
        last.update(at=now, done=(phase, done))
        if phase == "rows":
            rate = done / max(now - t0, 1e-6)
            text = f"read {done:,} / {total:,} rows ({100 * done / max(total, 1):.0f}%), " \
                   f"{rate:,.0f} rows/s"
        else:
            text = f"zipping {done / 2**20:,.0f} / {total / 2**20:,.0f} MiB"
        print(f"progress: {text}", file=sys.stderr, flush=True)

    with _database(args) as (url, _):
        try:
            result = export_file(url, args.dataset, fmt, args.out, force=args.force,
                                 on_progress=progress)
        except OSError as exc:
            raise ConfigError("out", f"cannot write {args.out or 'the file'}: "
                                     f"{exc.strerror or exc}") from None
    if args.json:
        _emit_json(result)
    else:
        print(f"exported {result['rows']:,} samples of dataset {result['name']} "
              f"({result['dataset_id']}) to {result['path']} "
              f"({result['bytes'] / 2**20:,.1f} MiB, {result['seconds']:.1f} s)")
    return 0


def cmd_serve(args) -> int:
    """The HTTP service in the foreground until Ctrl-C or SIGTERM (jobs then stop at their
    next batch and are recorded interrupted, resumable)."""
    from heimdall_synth.service.http.server import UnsafeBindError, serve
    port = _positive_int("port", args.port)
    if port > 65535:
        raise ConfigError("port", f"must be at most 65535, got {port}")
    workers = None if args.workers is None else _positive_int("workers", args.workers)
    logger = logging.getLogger("heimdall")
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logger.propagate = False  # main() gave it a handler; serve() may configure the root too
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # serve() installs its own handler
    try:
        serve(args.host, port, args.database_url, workers=workers)
    except UnsafeBindError as exc:
        return _fail(args, 2, "unsafe_bind", "host", str(exc))
    return 0


def cmd_db_upgrade(args) -> int:
    from heimdall_synth.service.storage.migrations import applied
    with _database(args) as (_, conn):
        current = sorted(applied(conn))
    if args.json:
        _emit_json({"applied": args.applied, "current": current})
    else:
        print(f"applied migrations: {', '.join(map(str, args.applied)) or 'none (up to date)'}; "
              f"database at version {current[-1] if current else 0}")
    return 0


# ----------------------------------------------------------------------------- main

def _fail(args, code: int, kind: str, field, message: str) -> int:
    print(f"error: {field}: {message}" if field else f"error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        _emit_json({"error": kind, "field": field, "message": message})
    return code


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("heimdall")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        previous = signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        if args.threads is not None:
            args.threads = _positive_int("threads", args.threads)
        return args.func(args)
    except ConfigError as exc:
        return _fail(args, 2, "invalid_field", exc.field, exc.message)
    except NotFoundError as exc:
        return _fail(args, 3, "not_found", exc.field, str(exc))
    except ConflictError as exc:
        return _fail(args, 4, exc.code, ", ".join(exc.fields) or None, str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): not an error of ours
        sys.stdout = open(os.devnull, "w")
        return 1
    except Exception as exc:  # database unreachable, migrations out of step, ...
        import psycopg
        from heimdall_synth.service.storage.migrations import MigrationError
        if not isinstance(exc, (psycopg.Error, MigrationError, OSError)):
            raise
        return _fail(args, 1, "database", "database", f"{type(exc).__name__}: {exc}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
