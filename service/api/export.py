"""GET /datasets/{id}/export?format=parquet|npz: the dataset as one file, streamed.

The request is checked first (422 naming ``format`` or ``dataset_id``), then the snapshot is
opened (404 for an unknown dataset) before any byte is sent, so both are JSON errors. Parquet
is then streamed row group by row group straight from the snapshot. NPZ needs every column
complete before it can be zipped: the view reads the dataset into column files in a temporary
folder first (errors are still JSON errors), then streams the zip and deletes the folder. A
failure after the first byte (the database gone mid-stream) cannot become a JSON error: the
connection is closed and the client sees a truncated file (a Parquet file without its footer, a
zip without its directory), never a complete-looking wrong one.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import closing

from flask import Blueprint, Response, request

from . import API_PREFIX, parse_uuid, query_args, state

bp = Blueprint("export", __name__, url_prefix=API_PREFIX)


@bp.get("/datasets/<dataset_id>/export")
def export_dataset(dataset_id):
    from service import export
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    args = query_args(("format",))
    fmt = export.check_format(args.get("format", export.DEFAULT_FORMAT))
    snapshot = export.Snapshot(state().url, dataset_id, field="dataset_id", by_name=False)
    headers = {"Content-Disposition": export.content_disposition(snapshot.name, fmt),
               "X-Dataset-Rows": str(snapshot.rows), "Cache-Control": "no-store"}
    if request.method == "HEAD":  # the headers only: read nothing (and claim no length)
        snapshot.close()
        return Response(iter(()), mimetype=fmt.media_type, headers=headers)
    if fmt.name == "parquet":
        body = export.stream(lambda out: export.parquet_steps(snapshot, out), snapshot.close)
        cleanup = snapshot.close
    else:
        work = tempfile.mkdtemp(prefix="heimdall-export-")

        def cleanup():
            snapshot.close()
            shutil.rmtree(work, ignore_errors=True)

        try:
            spool = export.NpzSpool(snapshot, work)
            with closing(spool.fill()) as steps:
                for _ in steps:
                    pass
            snapshot.close()
        except BaseException:
            cleanup()
            raise
        body = export.stream(spool.zip_steps, cleanup)
    response = Response(body, mimetype=fmt.media_type, headers=headers)
    response.call_on_close(cleanup)  # also when the body is never iterated
    return response
