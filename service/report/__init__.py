"""The dataset report: plots of a dataset, as PNG files (CLI), PNG responses and an HTML page.

* ``queries``: the data behind each plot, computed in PostgreSQL with bounded memory;
* ``plots``: one matplotlib figure per plot (Agg, imported on first use);
* ``relief``: a terrain's shaded relief, under the report's map and the dashboard's;
* ``render``: ``write_report`` (every plot to ``DIR/<plot>.png``, for the CLI) and
  ``render_png`` (one plot as PNG bytes, for HTTP);
* ``views``: ``GET /api/training/synthetic/datasets/<id>/report/<plot>.png`` and the page
  ``GET /datasets/<id>/report``.

This module stays light (no NumPy, no matplotlib): the app and the OpenAPI document import the
plot names from here.
"""

from __future__ import annotations

#: The plots, in report order: name (the file and URL stem) -> what it shows.
PLOTS = {
    "map": "Transmitter positions and receivers",
    "splits": "Train, validation and test cells",
    "snr": "Mean SNR of the detecting receivers",
    "gdop": "GDOP",
    "crb": "RSS Cramer-Rao bound",
    "detected": "Detecting receivers per sample",
    "distance_power": "Received power against distance",
    "rejections": "Attempts by outcome (the dataset's jobs)",
}
PLOT_NAMES = tuple(PLOTS)
