"""The subcommands: each ``cmd_*`` takes the parsed arguments and returns the exit code.

Jobs run through the job runner (``engine.runner``) with one worker, in the foreground: the
same runner the HTTP service uses, so a job means the same thing from both doors.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from heimdall_synth.kernel.config import ConfigError, check_split
from heimdall_synth.service.cli.options import positive_int, request_dict, seed_value
from heimdall_synth.service.cli.output import (Progress, emit_json, fail, print_fields,
                                               print_jobs, print_summary, table, when)
from heimdall_synth.service.engine.request import GenerateRequest
from heimdall_synth.service.storage.datasets import find_dataset, list_datasets, validate_dataset
from heimdall_synth.service.storage.ids import uuid_of
from heimdall_synth.service.storage.jobs import (get_job, list_jobs, recover_interrupted,
                                                request_cancel)

@contextmanager
def _database(args):
    """The server (started if embedded), migrated, with abandoned jobs marked interrupted;
    always closed/stopped on the way out (errors, Ctrl-C and SIGTERM included)."""
    from heimdall_synth.service.storage.database import connect, open_database
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


@contextmanager
def _runner(args, url):
    """The job runner with one worker: the CLI's jobs run in the foreground, one at a time."""
    from heimdall_synth.service.engine.runner import JobRunner
    runner = JobRunner(url, workers=1, threads=args.threads,
                       cluster=getattr(args, "cluster", None),
                       cluster_workers=getattr(args, "workers", None))
    try:
        yield runner
    finally:
        runner.close()


def _wait_in_foreground(args, conn, runner, entry, progress) -> int:
    """Wait for the job in the main thread, so that Ctrl-C and SIGTERM reach it and cancel the
    job (it stops after its current batch; its committed samples stay)."""
    stopped_by = None
    while not entry.done.is_set():  # not Thread.join: an interrupt could lose the thread state
        try:
            entry.done.wait(0.2)
        except (KeyboardInterrupt, SystemExit) as exc:
            if stopped_by is not None:
                raise  # a second interrupt: stop waiting; the job is recovered interrupted
            stopped_by = 130 if isinstance(exc, KeyboardInterrupt) else 143
            runner.cancel(entry.job_id)
            print("\ncancelling: the job stops after its current batch (again to abort)",
                  file=sys.stderr)
    error, final = entry.error, progress.final
    if final is None:  # refused before it started (already completed, run elsewhere)
        return fail(args, 1, "job_refused", "job_id", str(error))
    if args.json:
        emit_json({**get_job(conn, entry.job_id), "result": final})
    else:
        print_summary(final)
    if stopped_by is not None:
        return stopped_by
    if final["status"] != "completed":
        print(f"error: job {final['status']} ({final['stopped_reason']}): {final['message']}",
              file=sys.stderr)
        return 1
    return 0


def _progress(args) -> Progress:
    return Progress(not args.json, sys.stderr.isatty() and not args.verbose)


def _start(args, url, conn, request: GenerateRequest) -> int:
    progress = _progress(args)
    with _runner(args, url) as runner:
        created, entry = runner.create(conn, request, on_event=progress)
        if not args.json:
            print(f"{created['kind']} job {created['job_id']} on dataset "
                  f"{created['dataset_id']}")
            for field, v in created["overrides"].items():
                print(f"  override {field}: dataset {v['dataset']!r}, this job {v['job']!r}")
        return _wait_in_foreground(args, conn, runner, entry, progress)


def cmd_generate(args) -> int:
    request = GenerateRequest.from_dict(request_dict(args))  # refused before any database work
    if request.is_expansion:
        raise ConfigError("expand_dataset_id", "use 'heimdall-synth expand DATASET'")
    with _database(args) as (url, conn):
        return _start(args, url, conn, request)


def cmd_expand(args) -> int:
    given = request_dict(args)
    with _database(args) as (url, conn):
        given["expand_dataset_id"] = str(find_dataset(conn, args.dataset)["id"])
        return _start(args, url, conn, GenerateRequest.from_dict(given))


def cmd_resume(args) -> int:
    job_id = uuid_of(args.job, "job_id")
    progress = _progress(args)
    with _database(args) as (url, conn), _runner(args, url) as runner:
        _, entry = runner.resume(conn, job_id, on_event=progress)
        return _wait_in_foreground(args, conn, runner, entry, progress)


def cmd_cancel(args) -> int:
    job_id = uuid_of(args.job, "job_id")
    with _database(args) as (_, conn):
        job = request_cancel(conn, job_id)
    if args.json:
        emit_json(job)
    else:
        count = job["cancel_recorded_at_count"]
        if job["status"] == "cancelled":
            print(f"job {job_id} is cancelled; its dataset holds {count:,} samples")
        else:
            print(f"cancel recorded for job {job_id} ({job['status']}) with {count:,} samples "
                  "in its dataset: no further batch commits, and it stops at once")
    return 0


def cmd_datasets(args) -> int:
    with _database(args) as (_, conn):
        if args.action == "show":
            ds = find_dataset(conn, args.dataset)
            jobs = list_jobs(conn, ds["id"])
            if args.json:
                emit_json({**ds, "jobs": jobs})
                return 0
            config, quality = ds.pop("config"), ds.pop("quality_metrics")
            print_fields(ds)
            print("config:")
            print_fields(dict(sorted(config.items())), width=24)
            print("quality_metrics:")
            print_fields({k: f"{v:.6g}" if isinstance(v, float) else v
                           for k, v in sorted(quality.items())}, width=24)
            print("jobs:")
            print_jobs(jobs)
            return 0
        rows = list_datasets(conn)
    if args.json:
        emit_json({"datasets": rows})
        return 0
    table(["ID", "NAME", "TYPE", "METADATA", "ACTUAL", "CREATED"],
           [[r["id"], r["name"], r["dataset_type"], f"{r['num_samples']:,}",
             f"{r['actual_count']:,}" + ("" if r["actual_count"] == r["num_samples"] else " !"),
             when(r["created_at"])] for r in rows])
    return 0


def cmd_jobs(args) -> int:
    job_id = uuid_of(args.job, "job_id") if args.action == "show" else None
    with _database(args) as (_, conn):
        if job_id:
            job = get_job(conn, job_id)
            emit_json(job) if args.json else print_fields(job, width=22)
            return 0
        dataset_id = find_dataset(conn, args.dataset)["id"] if args.dataset else None
        jobs = list_jobs(conn, dataset_id)
    if args.json:
        emit_json({"jobs": jobs})
    else:
        print_jobs(jobs)
    return 0


def cmd_validate(args) -> int:
    with _database(args) as (_, conn):
        report = validate_dataset(conn, find_dataset(conn, args.dataset)["id"])
    emit_json(report) if args.json else print_fields(report)
    return 0 if report["ok"] else 1


def cmd_report(args) -> int:
    """Every plot of the report as DIR/<plot>.png (iq_raw: also sample 0's signal pictures,
    DIR/sample-0-<picture>.png); prints the files written."""
    from heimdall_synth.service.report.render import write_report
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    with _database(args) as (_, conn):
        dataset = find_dataset(conn, args.dataset)
        try:
            paths = write_report(conn, dataset["id"], out)
            if dataset["dataset_type"] == "iq_raw" and dataset["num_samples"]:
                from heimdall_synth.service.report.signal_plots import write_sample_signal_pngs
                paths += write_sample_signal_pngs(conn, dataset["id"], out, sample_index=0)
        except OSError as exc:
            raise ConfigError("out", f"cannot write to {out}: {exc.strerror or exc}") from None
    if args.json:
        emit_json({"dataset_id": dataset["id"], "name": dataset["name"],
                    "files": [str(p) for p in paths]})
    else:
        print("\n".join(str(p) for p in paths))
    return 0


def cmd_baseline(args) -> int:
    """Train and score the baseline localizer (stored with the dataset) and write its error
    picture; with --runs, list the dataset's stored runs instead."""
    from heimdall_synth.service.report.baseline_plots import km_text as _km
    from heimdall_synth.service.storage.baselines import list_runs
    from heimdall_synth.service.training.baseline import require_sklearn
    seed = seed_value(args.seed)
    if not args.runs:
        try:
            require_sklearn()
        except ImportError as exc:  # before any work: the extra is missing
            return fail(args, 1, "missing_extra", None, str(exc))
    with _database(args) as (url, conn):
        dataset = find_dataset(conn, args.dataset)
        if args.runs:
            runs = list_runs(conn, dataset["id"])
            if args.json:
                emit_json({"dataset_id": dataset["id"], "name": dataset["name"], "runs": runs})
            else:
                table(["RUN", "CREATED", "SEED", "SAMPLES", "TEST", "MEDIAN_KM", "P90_KM",
                       "CENTRE_MEDIAN_KM", "MEDIAN_CRB_KM", "TRAIN_S"],
                      [[r["id"], when(r["created_at"]), r["seed"], f"{r['dataset_samples']:,}",
                        f"{r['test_samples']:,}", _km(r["median_error_m"]),
                        _km(r["p90_error_m"]), _km(r["centre_median_error_m"]),
                        _km(r["median_crb_m"]), f"{r['train_seconds']:.1f}"] for r in runs])
            return 0
        from heimdall_synth.service.report.render import baseline_figures, write_png
        from heimdall_synth.service.training.baseline import run_baseline
        plot = Path(args.plot or f"{dataset['name']}-baseline.png")
        if plot.is_dir():
            raise ConfigError("plot", f"{plot} is a folder; give a file name")
        run = run_baseline(url, str(dataset["id"]), seed=seed)
        try:
            write_png(plot, baseline_figures(conn, dataset["id"], run["id"],
                                             ("baseline_errors",))["baseline_errors"])
        except OSError as exc:
            raise ConfigError("plot", f"cannot write {plot}: {exc.strerror or exc}") from None
    summary = {k: v for k, v in run.items() if k not in ("test_sample_index", "test_error_m")}
    summary["plot"] = str(plot)
    if args.json:
        emit_json(summary)
        return 0
    print_fields({
        "run": run["id"], "dataset": f"{dataset['name']} ({dataset['id']})",
        "method": run["method"], "seed": run["seed"],
        "samples": f"{run['dataset_samples']:,} (train {run['train_samples']:,}, "
                   f"test {run['test_samples']:,})",
        "median error": f"{_km(run['median_error_m'])} km",
        "p90 error": f"{_km(run['p90_error_m'])} km",
        "centre's median": f"{_km(run['centre_median_error_m'])} km (predicting the train "
                           "split's mean position)",
        "centre's p90": f"{_km(run['centre_p90_error_m'])} km",
        "median CRB": f"{_km(run['median_crb_m'])} km (of the test samples)",
        "median GDOP": "-" if run["median_gdop"] is None else f"{run['median_gdop']:.2f}",
        "training": f"{run['train_seconds']:.1f} s (whole run {run['total_seconds']:.1f} s)",
        "plot": plot})
    return 0


def cmd_export(args) -> int:
    """The dataset as one file, from one snapshot; progress on stderr, the file's path on
    stdout (or the summary with --json)."""
    from heimdall_synth.service.export.writers import FORMATS, check_format, export_file
    suffix = Path(args.out).suffix.lstrip(".") if args.out and not args.iq else ""
    fmt = check_format(args.format or (suffix if suffix in FORMATS else "parquet"))
    if args.iq and not args.out:
        raise ConfigError("out", "--iq writes a folder: give it with --out DIR")
    split = check_split(args.split)
    if args.iq and split is not None:
        raise ConfigError("split", "--iq exports every sample (the Zarr store is indexed by "
                                   "sample_index); filter by the features file's split column")
    t0, last = time.monotonic(), {"at": 0.0, "done": None}

    def progress(phase, done, total):  # at most once a second, and the end of each phase
        now = time.monotonic()
        if args.json or (phase, done) == last["done"] or (now - last["at"] < 1.0
                                                          and done < total):
            return
        last.update(at=now, done=(phase, done))
        if phase in ("rows", "iq"):
            rate = done / max(now - t0, 1e-6)
            what = "rows" if phase == "rows" else "samples' IQ"
            text = f"read {done:,} / {total:,} {what} ({100 * done / max(total, 1):.0f}%), " \
                   f"{rate:,.0f}/s"
        else:
            text = f"zipping {done / 2**20:,.0f} / {total / 2**20:,.0f} MiB"
        print(f"progress: {text}", file=sys.stderr, flush=True)

    with _database(args) as (url, _):
        try:
            if args.iq:
                from heimdall_synth.service.export.iq_export import export_iq
                result = export_iq(url, args.dataset, args.out, fmt, force=args.force,
                                   threads=args.threads, on_progress=progress)
            else:
                result = export_file(url, args.dataset, fmt, args.out, force=args.force,
                                     on_progress=progress, split=split)
        except OSError as exc:
            raise ConfigError("out", f"cannot write {args.out or 'the file'}: "
                                     f"{exc.strerror or exc}") from None
    if args.json:
        emit_json(result)
    else:
        print(f"exported {result['rows']:,} samples of dataset {result['name']} "
              f"({result['dataset_id']}) to {result['path']} "
              f"({(result['bytes'] + result.get('iq_bytes', 0)) / 2**20:,.1f} MiB, "
              f"{result['seconds']:.1f} s)")
    return 0


def cmd_serve(args) -> int:
    """The HTTP service in the foreground until Ctrl-C or SIGTERM (jobs then stop at their
    next batch and are recorded interrupted, resumable)."""
    from heimdall_synth.service.http.server import UnsafeBindError, serve
    port = positive_int("port", args.port)
    if port > 65535:
        raise ConfigError("port", f"must be at most 65535, got {port}")
    workers = None if args.workers is None else positive_int("workers", args.workers)
    logger = logging.getLogger("heimdall")
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logger.propagate = False  # main() gave it a handler; serve() may configure the root too
    try:
        serve(args.host, port, args.database_url, workers=workers)
    except UnsafeBindError as exc:
        return fail(args, 2, "unsafe_bind", "host", str(exc))
    return 0


def cmd_db_upgrade(args) -> int:
    from heimdall_synth.service.storage.migrations import applied
    with _database(args) as (_, conn):
        current = sorted(applied(conn))
    if args.json:
        emit_json({"applied": args.applied, "current": current})
    else:
        print(f"applied migrations: {', '.join(map(str, args.applied)) or 'none (up to date)'}; "
              f"database at version {current[-1] if current else 0}")
    return 0


# ----------------------------------------------------------------------------- main


def cmd_db_shell(args) -> int:
    """psql on the database the tool uses, with a client of the server's major version: the one
    shipped with the embedded server when it matches, else a ``psql`` on PATH that does. Extra
    arguments go to psql (``heimdall-synth db shell -- -c 'SELECT 1'``)."""
    import subprocess
    from heimdall_synth.service.storage.database import psql_client
    extra = [a for a in (args.psql_args or []) if a != "--"] if args.psql_args else []
    with _database(args) as (url, conn):
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        client = psql_client(major)
        if client is None:
            raise ConfigError("database", f"no psql {major} client found: the server is "
                              f"PostgreSQL {major}; install its client (Debian: apt-get install "
                              f"postgresql-client-{major}) or set DATABASE_URL to a server "
                              "whose version your psql matches")
        if not args.json:
            print(f"psql {major} on {_redacted(url)} (schema heimdall; \\q quits)",
                  file=sys.stderr)
        return subprocess.call([str(client), url, *extra])


def _redacted(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict
    try:
        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - only for display
        return "the database"
    return f"database {params.get('dbname', '?')} at {params.get('host', 'localhost')}"


def cmd_terrain_add(args) -> int:
    """Read and merge the files (.hgt tiles, GeoTIFF) first (a bad file changes nothing), then
    store the grid."""
    from heimdall_synth.service.storage.terrains import add_terrain, terrain_from_files
    grid = terrain_from_files(args.files)
    with _database(args) as (_, conn):
        row = add_terrain(conn, args.name, grid, [Path(f).name for f in args.files])
    if args.json:
        emit_json(row)
    else:
        print(f"terrain {row['name']}: latitude {row['south']:.5f} to {row['north']:.5f}, "
              f"longitude {row['west']:.5f} to {row['east']:.5f}, {row['rows']:,} x "
              f"{row['cols']:,} cells of {row['spacing_arcsec']:g} arc-seconds, "
              f"sha256 {row['sha256']}")
    return 0


def cmd_terrain_list(args) -> int:
    from heimdall_synth.service.storage.terrains import list_terrains
    with _database(args) as (_, conn):
        rows = list_terrains(conn)
    if args.json:
        emit_json({"terrains": rows})
        return 0
    table(["NAME", "SOUTH", "NORTH", "WEST", "EAST", "CELLS", "ARCSEC", "SHA256"],
          [[r["name"], f"{r['south']:.4f}", f"{r['north']:.4f}", f"{r['west']:.4f}",
            f"{r['east']:.4f}", f"{r['rows']}x{r['cols']}", f"{r['spacing_arcsec']:g}",
            r["sha256"][:16]] for r in rows])
    return 0


def cmd_terrain_delete(args) -> int:
    from heimdall_synth.service.storage.terrains import delete_terrain
    with _database(args) as (_, conn):
        delete_terrain(conn, args.name)
    if not args.json:
        print(f"terrain {args.name} deleted")
    else:
        emit_json({"deleted": args.name})
    return 0
