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

import threading
from contextlib import closing
from typing import Callable

from flask import Blueprint, Response, current_app, request

from heimdall_synth.kernel.config import check_split
from heimdall_synth.service.http.common import API_PREFIX, ApiError, parse_uuid, query_args, state

bp = Blueprint("export", __name__, url_prefix=API_PREFIX)

RETRY_AFTER_S = 10
_SLOTS_KEY = "heimdall.export_slots"
_SLOTS_LOCK = threading.Lock()


def take_export_slot() -> Callable[[], None]:
    """One of the app's ``MAX_EXPORTS`` export slots, or 503 ``too_many_exports`` at once.

    A download is sent after the request's own connection is given back (common.get_db)
    and holds its thread and its snapshot's connection for as long as the client reads, so
    exports have their own cap: without it enough slow downloads would take every thread and
    every connection the server has. Returns the release (safe to call more than once)."""
    app = current_app
    limit = int(app.config["MAX_EXPORTS"])
    with _SLOTS_LOCK:
        slots = app.extensions.get(_SLOTS_KEY)
        if slots is None:
            slots = app.extensions[_SLOTS_KEY] = threading.BoundedSemaphore(limit)
    if not slots.acquire(blocking=False):
        raise ApiError(503, "too_many_exports",
                       f"this server already streams {limit} exports, its limit; retry in "
                       f"{RETRY_AFTER_S} s", headers={"Retry-After": str(RETRY_AFTER_S)})
    once = threading.Lock()
    released = []

    def release() -> None:
        with once:
            if not released:
                released.append(True)
                slots.release()
    return release


@bp.get("/datasets/<dataset_id>/export")
def export_dataset(dataset_id):
    from heimdall_synth.service.export import writers as export
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    args = query_args(("format", "split"))
    fmt = export.check_format(args.get("format", export.DEFAULT_FORMAT))
    split = check_split(args.get("split"))
    release = take_export_slot()
    try:
        return _export_response(dataset_id, fmt, release, split)
    except BaseException:
        release()
        raise


def _export_response(dataset_id, fmt, release, split=None):
    from heimdall_synth.service.export import writers as export
    snapshot = export.Snapshot(state().url, dataset_id, field="dataset_id", by_name=False,
                               split=split)
    stem = snapshot.name if split is None else f"{snapshot.name}-{split}"
    headers = {"Content-Disposition": export.content_disposition(stem, fmt),
               "X-Dataset-Rows": str(snapshot.rows), "Cache-Control": "no-store"}
    if request.method == "HEAD":  # the headers only: read nothing (and claim no length)
        snapshot.close()
        release()
        return Response(iter(()), mimetype=fmt.media_type, headers=headers)
    if fmt.name == "parquet":
        def cleanup():
            snapshot.close()
            release()

        body = export.stream(lambda out: export.parquet_steps(snapshot, out), cleanup)
    else:
        spool = export.NpzSpool(snapshot)  # anonymous files in the temporary folder

        def cleanup():
            snapshot.close()
            spool.close()
            release()

        try:
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
