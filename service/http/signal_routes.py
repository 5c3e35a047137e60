"""A sample's IQ: GET /datasets/{id}/samples/{index}/iq[?format=npy|sigmf].

An iq_raw sample's IQ (receivers x IQ samples, complex64, sqrt(mW)) is synthesized again from
the job that generated it, or read from its stored captures (``iq_storage: postgres``); both
give the same values (``engine.signals``). ``npy`` (the default) is a NumPy ``.npy`` file;
``sigmf`` a SigMF recording (a tar of ``.sigmf-data`` and ``.sigmf-meta``) whose metadata carry
the sample rate, the carrier, every receiver's position and the true transmitter.

Errors: 422 naming ``dataset_id`` or ``format``; 404 naming ``dataset_id`` or ``sample_index``;
409 naming ``dataset_type`` for a dataset that is not iq_raw.
"""

from __future__ import annotations

from flask import Blueprint, Response

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.http.common import API_PREFIX, get_db, parse_uuid, query_args

bp = Blueprint("signals", __name__, url_prefix=API_PREFIX)

FILE_FORMATS = {"npy": "application/octet-stream", "sigmf": "application/x-tar"}
#: A read synthesizes one sample on one thread: requests never compete with a job's cores.
READ_THREADS = 1


@bp.get("/datasets/<dataset_id>/samples/<int:sample_index>/iq")
def sample_iq(dataset_id, sample_index):
    from heimdall_synth.service.engine.signals import sample_signal
    from heimdall_synth.service.export.iq_files import npy_bytes, sigmf_archive

    dataset_id = parse_uuid(dataset_id, "dataset_id")
    fmt = query_args(("format",)).get("format", "npy")
    if fmt not in FILE_FORMATS:
        raise ConfigError("format", f"must be one of {list(FILE_FORMATS)}, got {fmt!r}")
    signal = sample_signal(get_db(), dataset_id, sample_index, threads=READ_THREADS)
    name = f"{dataset_id}-{sample_index}"
    if fmt == "npy":
        body, filename = npy_bytes(signal.iq), f"{name}.npy"
    else:
        receivers = [{"id": r["rx_id"], "name": r["name"], "lat": r["lat"], "lon": r["lon"],
                      "alt_m": r["alt_m"], "distance_km": r["distance_km"],
                      "snr_db": r["snr_db"], "rssi_dbm": r["rssi_dbm"],
                      "signal_present": r["signal_present"]} for r in signal.receivers]
        description = (f"heimdall-synth iq_raw dataset {dataset_id}, sample {sample_index} "
                       f"(attempt {signal.attempt_index}); served as {signal.iq_format}")
        body = sigmf_archive(name, signal.iq, signal.sample_rate_hz, signal.frequency_hz,
                             receivers, signal.transmitter, description)
        filename = f"{name}.sigmf"
    return Response(body, mimetype=FILE_FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Sample-Rate-Hz": repr(float(signal.sample_rate_hz)),
        "X-Frequency-Hz": repr(float(signal.frequency_hz)),
        "X-IQ-Format": signal.iq_format, "Cache-Control": "no-store"})
