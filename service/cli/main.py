"""The ``heimdall-synth`` command line.

Every option that sets a request field is generated from ``kernel.defaults.PARAMETERS``: field
``foo_bar`` is ``--foo-bar``. Only the options the user gave reach the request (argparse
``SUPPRESS``), so ``GenerateRequest`` applies the defaults and does all validation. Exit codes:
0 done, 1 job not completed (or validation failed), 2 invalid field, 3 not found, 4 conflict,
130 Ctrl-C (143 SIGTERM). ``--json`` prints one JSON object on stdout and no progress.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.cli.commands import (cmd_baseline, cmd_cancel, cmd_datasets, cmd_db_shell,
                                                 cmd_db_upgrade, cmd_expand, cmd_export,
                                                 cmd_generate, cmd_jobs, cmd_report, cmd_resume,
                                                 cmd_serve, cmd_terrain_add, cmd_terrain_delete,
                                                 cmd_terrain_list, cmd_validate)
from heimdall_synth.service.cli.options import add_parameter_options, positive_int
from heimdall_synth.service.cli.output import fail
from heimdall_synth.service.engine.request import ConflictError, NotFoundError, NotIQError


def cluster_workers(text: str) -> int:
    """--workers: a whole number of worker processes, 1 or more."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 or str(n) != text.strip():
        raise argparse.ArgumentTypeError(f"workers: {text!r} is not a whole number of "
                                         "processes, 1 or more")
    return n


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
                       help="diagnostic log lines on stderr (docs/GENERATION.md lists them)")
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
    add_parameter_options(gen, exclude=("expand_dataset_id",))
    exp = command("expand", cmd_expand, "append new samples to a dataset")
    exp.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    exp.add_argument("--request", metavar="FILE", help="JSON request object ('-': stdin)")
    add_parameter_options(exp, exclude=("name", "description", "expand_dataset_id"))
    resume = command("resume", cmd_resume, "continue a stopped job to its original target")
    resume.add_argument("job", metavar="JOB", help="job id")
    for p in (gen, exp, resume):
        where = p.add_mutually_exclusive_group()
        where.add_argument("--cluster", metavar="ADDRESS", help="evaluate the attempts on the "
                           "Dask cluster whose scheduler is at ADDRESS (tcp://host:8786; the "
                           "distributed extra)")
        where.add_argument("--workers", metavar="N", type=cluster_workers, help="evaluate the "
                           "attempts on a local Dask cluster of N worker processes")

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
    report = command("report", cmd_report, "write a dataset's report: its plots as PNG files "
                     "(iq_raw: also the spectrum, spectrogram and envelope of sample 0)")
    report.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    report.add_argument("--out", metavar="DIR", required=True, help="folder for the PNG files "
                        "(created if missing; files of the same names are replaced)")
    base = command("baseline", cmd_baseline, "train the baseline localizer on a dataset's train "
                   "split, score it on its test split against the Cramer-Rao bound, store the "
                   "run with the dataset and write its error picture (the train extra)")
    base.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    base.add_argument("--seed", default="0", help="the model's random state "
                      "(default 0): a run is reproducible from it")
    base.add_argument("--plot", metavar="PATH", help="the PNG of the error against GDOP and "
                      "CRB (default: <dataset name>-baseline.png in the current folder)")
    base.add_argument("--runs", action="store_true", help="list the dataset's stored runs "
                      "instead of running one")
    export = command("export", cmd_export, "write a dataset to a Parquet or NPZ file for "
                     "training (streamed: memory does not grow with the dataset)")
    export.add_argument("dataset", metavar="DATASET", help="dataset id or name")
    export.add_argument("--format", metavar="{parquet,npz}", default=None, help="file format "
                        "(default: from --out's extension, else parquet)")
    export.add_argument("--out", metavar="PATH", help="file to write (default: "
                        "<dataset name>.<format> in the current folder)")
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    export.add_argument("--split", metavar="{train,validation,test}", default=None,
                        help="only the samples of this split (default: all)")
    export.add_argument("--iq", action="store_true", help="iq_raw datasets: --out is a folder "
                        "that receives features.<format> and iq.zarr, a Zarr store of the IQ "
                        "(samples x receivers x IQ samples, complex64)")
    command("cancel", cmd_cancel, "ask a job to stop after its current batch"
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
    shell = db_sub.add_parser("shell", help="open psql on the database (a client of the "
                              "server's version); arguments after -- go to psql",
                              parents=[sub_common])
    shell.add_argument("psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL_ARGS")
    shell.set_defaults(func=cmd_db_shell)
    ter = command("terrain", None, "elevation grids registered for datasets' terrain")
    ter_sub = ter.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = ter_sub.add_parser("add", help="register SRTM .hgt tiles and GeoTIFF files, merged, "
                             "as one terrain", parents=[sub_common])
    add.add_argument("name", metavar="NAME", help="the terrain's name (1-100 characters)")
    add.add_argument("files", metavar="FILE", nargs="+",
                     help="SRTM .hgt tiles (N45E007.hgt) and GeoTIFF files (.tif, .tiff: a "
                          "geographic CRS such as EPSG:4326, north-up, one band, no nodata "
                          "cells; needs pip install 'heimdall-synth[geotiff]') on one lattice")
    add.set_defaults(func=cmd_terrain_add)
    ter_sub.add_parser("list", help="the registered terrains: bounds, spacing, SHA-256",
                       parents=[sub_common]).set_defaults(func=cmd_terrain_list)
    rm = ter_sub.add_parser("delete", help="remove a terrain", parents=[sub_common])
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(func=cmd_terrain_delete)
    return parser


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
            args.threads = positive_int("threads", args.threads)
        return args.func(args)
    except ConfigError as exc:
        return fail(args, 2, "invalid_field", exc.field, exc.message)
    except NotFoundError as exc:
        return fail(args, 3, "not_found", exc.field, str(exc))
    except ConflictError as exc:
        return fail(args, 4, exc.code, ", ".join(exc.fields) or None, str(exc))
    except NotIQError as exc:
        return fail(args, 4, "not_iq_raw", exc.field, str(exc))
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
        return fail(args, 1, "database", "database", f"{type(exc).__name__}: {exc}")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
