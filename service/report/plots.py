"""One matplotlib figure per plot of the report, from the data of ``service.report.queries``.

matplotlib is imported on first use, and only its object-oriented API is used (``Figure`` with
an Agg canvas, never pyplot): no global figure state, no display needed. Every figure has the
same size, a title saying what it shows and how many samples it covers, axis labels with units,
and a plot area of colour ``PLOT_FACE``. A plot with nothing to show says so in its plot area
instead of failing.
"""

from __future__ import annotations

import io
import math

import numpy as np

from heimdall_synth.service.report import PLOTS, relief

FIGSIZE_IN, DPI = (8.0, 5.5), 100
#: The plot area's background: the tests find the plot area in a PNG by this colour.
PLOT_FACE = "#f5f5f0"
TX_COLOR, RX_COLOR, BAR_COLOR, ACCEPTED_COLOR = "#1f77b4", "#d62728", "#4c72b0", "#2ca02c"

HISTOGRAM_AXES = {
    "snr": "mean SNR of the detecting receivers (dB)",
    "gdop": "GDOP (dimensionless, log scale)",
    "crb": "RSS Cramer-Rao bound on position (m, log scale)",
}
EXCLUDED_NOTE = {
    "snr": "{n:,} samples without a finite mean SNR are not shown",
    "gdop": "{n:,} samples with an infinite GDOP are not shown",
    "crb": "{n:,} samples with an infinite CRB (singular geometry) are not shown",
    "detected": "{n:,} samples without a detecting-receiver count are not shown",
}


def new_figure(title: str, subtitle: str):
    """A figure of the report's size with one plot area; returns (figure, axes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_facecolor(PLOT_FACE)
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    return fig, ax


def to_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def note(ax, text: str, y: float = 0.5, size: int = 12) -> None:
    """A line of text in the plot area (an empty plot's explanation, a caveat)."""
    ax.text(0.5, y, text, transform=ax.transAxes, ha="center", va="center", fontsize=size,
            color="#444444", wrap=True, zorder=7,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "none", "alpha": 0.8})


def nothing_to_show(ax, text: str) -> None:
    """An empty plot: the reason in its middle, no meaningless 0..1 ticks."""
    note(ax, text)
    ax.set_xticks([])
    ax.set_yticks([])


def sample_text(sample) -> str:
    """'all 3,000 samples' or '20,000 of 5,000,000 samples (every 250th)'."""
    if sample.stride == 1:
        return f"all {sample.count:,} samples"
    n = sample.stride
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{sample.size:,} of {sample.count:,} samples (every {n:,}{suffix})"


# ------------------------------------------------------------------------ the plots

def map_figure(data):
    """Transmitters (a sample), the receivers by name, and the boxes transmitters are drawn in;
    the dataset's terrain as shaded relief under them when it has one (named in the subtitle)."""
    shown = len(data.tx_lat)
    subtitle = f"{sample_text(data.sample)} shown" if shown else "no samples"
    terrain = data.terrain
    if terrain is not None:
        subtitle += f"; {terrain.caption()}"
    fig, ax = new_figure(PLOTS["map"], subtitle)
    if shown:
        ax.scatter(data.tx_lon, data.tx_lat, s=6, color=TX_COLOR, alpha=0.4, linewidths=0,
                   label=f"transmitters ({shown:,})", zorder=2)
    else:
        note(ax, "No samples in this dataset", size=11)
    draw_map_frame(fig, ax, data, with_relief=True)
    return fig


def draw_map_frame(fig, ax, data, with_relief: bool, legend: bool = True) -> None:
    """What every map of the report shares (``data``: a ``queries.MapData``): the boxes
    transmitters are drawn in, the receivers (by name) or the random receivers' positions,
    the extent, the aspect of degrees at the map's latitude, the axis labels and the legend;
    with ``with_relief`` the dataset's terrain as shaded relief under everything."""
    from matplotlib.patches import Rectangle

    random = not data.receivers
    inner_label = ("area of the random receivers" if random else
                   f"receivers' bounding box ({data.inside_ratio:.0%} of transmitters inside)")
    lat0, lat1, lon0, lon1 = data.inner_box
    ax.add_patch(Rectangle((lon0, lat0), lon1 - lon0, lat1 - lat0, fill=False, ls="--",
                           lw=1.2, ec="#555555", label=inner_label, zorder=3))
    lat0, lat1, lon0, lon1 = data.outer_box
    ax.add_patch(Rectangle((lon0, lat0), lon1 - lon0, lat1 - lat0, fill=False, lw=1.5,
                           ec="black", zorder=3,
                           label=f"limit of transmitter positions (+{data.margin_deg:g} deg)"))
    if random and len(data.random_rx_lat):
        ax.scatter(data.random_rx_lon, data.random_rx_lat, s=8, marker="^", color=RX_COLOR,
                   alpha=0.2, linewidths=0, zorder=4,
                   label=f"random receivers ({len(data.random_rx_lat):,} positions)")
    elif not random:
        ax.scatter([r["lon"] for r in data.receivers], [r["lat"] for r in data.receivers],
                   s=90, marker="^", color=RX_COLOR, edgecolors="black", linewidths=0.8,
                   zorder=5, label=f"receivers ({len(data.receivers)})")
    west, east, south, north = relief.map_extent(data.outer_box)
    terrain = data.terrain
    if with_relief and terrain is not None and terrain.grid is not None:
        # the terrain as shaded relief under everything else, over exactly the map's extent
        relief.draw(ax, relief.shade(terrain.grid, (west, east, south, north)))
    ax.set_xlim(west, east)
    ax.set_ylim(south, north)
    # degrees of longitude are shorter than degrees of latitude by cos(latitude)
    ax.set_aspect(1.0 / math.cos(math.radians((lat0 + lat1) / 2.0)), adjustable="box")
    ax.set_xlabel("longitude (deg E)")
    ax.set_ylabel("latitude (deg N)")
    if legend:
        fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    if not random:
        _label_receivers(fig, ax, data.receivers)


#: train, validation, test
SPLIT_COLORS = ("#9ecae1", "#fdae6b", "#d62728")
#: The split map's raster: at most this many pixels a side.
SPLIT_RASTER = 700


def split_map_figure(data):
    """The map cut into its splits: the split function evaluated over the box transmitters
    are drawn in (one pixel per cell where cells are large enough to see, else finer than a
    pixel), with each split's share of the dataset's samples."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    from heimdall_synth.kernel.defaults import SPLITS
    from heimdall_synth.kernel.splits import METRES_PER_DEGREE, split_of

    total = sum(data.counts)
    fig, ax = new_figure(PLOTS["splits"], f"cells of {data.cell_m:,.0f} m; "
                         + (f"{total:,} samples" if total else "no samples"))
    # over the box transmitters are drawn in (no sample lies outside it); one pixel per cell
    # where that fits in SPLIT_RASTER, a cell's size in degrees taken at the middle latitude
    south, north, west, east = data.map.outer_box
    cos_mid = math.cos(math.radians((south + north) / 2.0))
    rows = int(min(SPLIT_RASTER, max(2, (north - south) * METRES_PER_DEGREE / data.cell_m)))
    cols = int(min(SPLIT_RASTER, max(2, (east - west) * METRES_PER_DEGREE * cos_mid
                                     / data.cell_m)))
    lat = south + (np.arange(rows) + 0.5) * (north - south) / rows
    lon = west + (np.arange(cols) + 0.5) * (east - west) / cols
    codes = split_of(lat[:, None], lon[None, :], data.cell_m, data.train, data.validation)
    ax.imshow(codes, origin="lower", extent=(west, east, south, north), interpolation="nearest",
              cmap=ListedColormap(SPLIT_COLORS), vmin=-0.5, vmax=2.5, alpha=0.85, zorder=1)
    for name, color, n in zip(SPLITS, SPLIT_COLORS, data.counts):
        share = f"{n / total:.1%}" if total else "-"
        # an empty patch: the split's entry in the legend
        ax.add_patch(Rectangle((west, south), 0, 0, color=color,
                               label=f"{name}: {n:,} samples ({share})"))
    if not total:
        note(ax, "No samples in this dataset", y=0.9, size=11)
    draw_map_frame(fig, ax, data.map, with_relief=False)
    return fig


# Where a receiver's name may go, in order of preference: (dx, dy) points, alignment.
_LABEL_SPOTS = ((7, 4, "left", "bottom"), (7, -4, "left", "top"), (-7, 4, "right", "bottom"),
                (-7, -4, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"))


def _label_receivers(fig, ax, receivers) -> None:
    """Each receiver's name beside its marker, in the first spot inside the plot area that
    overlaps no other name or marker (receivers a few km apart would otherwise print over each
    other)."""
    fig.canvas.draw()  # fixes the layout, so display positions are final
    renderer = fig.canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    half = 8  # pixels: half a marker
    xy = ax.transData.transform([(r["lon"], r["lat"]) for r in receivers])
    taken = [(x - half, y - half, x + half, y + half) for x, y in xy]
    for r in receivers:
        for k, (dx, dy, ha, va) in enumerate(_LABEL_SPOTS):
            # parse_math=False: a name is shown as typed ('$5 to $10' is not mathtext)
            label = ax.annotate(r["name"], (r["lon"], r["lat"]), xytext=(dx, dy),
                                parse_math=False,
                                textcoords="offset points", ha=ha, va=va, fontsize=8, zorder=6,
                                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                      "alpha": 0.75})
            label.set_in_layout(False)
            e = label.get_window_extent(renderer)
            box = (e.x0, e.y0, e.x1, e.y1)
            inside = (area.x0 <= box[0] and box[2] <= area.x1 and area.y0 <= box[1]
                      and box[3] <= area.y1)
            free = inside and not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3]
                                      and t[1] < box[3] for t in taken)
            if free or k == len(_LABEL_SPOTS) - 1:
                taken.append(box)
                break
            label.remove()


def histogram_figure(name: str, hist):
    """A quality histogram over every sample (log-spaced bins on a log axis for GDOP, CRB)."""
    fig, ax = new_figure(PLOTS[name], f"all {hist.total:,} samples" if hist.total
                         else "no samples")
    if hist.binned:
        ax.stairs(hist.counts, hist.edges, fill=True, color=BAR_COLOR, alpha=0.9)
        if hist.log:
            ax.set_xscale("log")
        ax.set_xlim(hist.edges[0], hist.edges[-1])
        ax.set_ylim(0, max(hist.counts) * 1.08)
    else:
        nothing_to_show(ax, "No samples in this dataset" if not hist.total else
                        "No sample has a value that can be shown")
    if hist.excluded and hist.total:
        note(ax, EXCLUDED_NOTE[name].format(n=hist.excluded), y=0.94, size=9)
    ax.set_xlabel(HISTOGRAM_AXES[name])
    ax.set_ylabel("samples")
    return fig


def detected_figure(hist):
    """Samples by the number of receivers that detected the signal."""
    fig, ax = new_figure(PLOTS["detected"], f"all {hist.total:,} samples" if hist.total
                         else "no samples")
    if hist.binned:
        values = np.asarray(hist.edges[:-1]) + 0.5
        ax.bar(values, hist.counts, width=0.8, color=BAR_COLOR)
        ax.set_xticks(values)
        ax.set_xticklabels([str(int(v)) for v in values])
        ax.set_xlim(values[0] - 0.6, values[-1] + 0.6)
    else:
        nothing_to_show(ax, "No samples in this dataset")
    if hist.excluded and hist.total:
        note(ax, EXCLUDED_NOTE["detected"].format(n=hist.excluded), y=0.94, size=9)
    ax.set_xlabel("receivers detecting the signal (mean SNR >= min_snr_db)")
    ax.set_ylabel("samples")
    return fig


def distance_power_figure(grid):
    """Detecting links binned by distance and received power, with the free-space line."""
    from matplotlib.colors import LogNorm

    fig, ax = new_figure(PLOTS["distance_power"],
                         f"{grid.links:,} detecting links of {sample_text(grid.sample)}"
                         if grid.sample.count else "no samples")
    if grid.links:
        d, p = np.asarray(grid.distance_edges_km), np.asarray(grid.power_edges_dbm)
        cells = np.ma.masked_equal(grid.counts.T, 0)
        mesh = ax.pcolormesh(d, p, cells, cmap="viridis", norm=LogNorm(vmin=1),
                             shading="flat")
        fig.colorbar(mesh, ax=ax, label="links per cell")
        km = np.geomspace(d[0], d[-1], 100)
        # the model's free-space loss (docs/MODEL.md), 0 dBi antennas:
        # FSPL = 20 log10(d_km) + 20 log10(f_MHz) + 32.44 dB
        free_space = grid.tx_power_dbm - (20 * np.log10(km) + 20 * np.log10(grid.frequency_mhz)
                                          + 32.44)
        ax.plot(km, free_space, color="black", lw=1.3,
                label=f"free space: {grid.tx_power_dbm:g} dBm at {grid.frequency_mhz:g} MHz, "
                      "0 dBi")
        for k, threshold in enumerate(grid.thresholds_dbm):
            ax.axhline(threshold, color=RX_COLOR, ls="--", lw=1.1,
                       label="detection threshold (noise floor + min_snr_db)" if k == 0 else None)
        ax.set_xscale("log")
        ax.set_xlim(d[0], d[-1])
        ax.set_ylim(min([p[0], *grid.thresholds_dbm]) - 3.0, p[-1] + 3.0)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    else:
        nothing_to_show(ax, "No samples in this dataset" if not grid.sample.count else
                        "No receiver detected the signal in the samples read")
    ax.set_xlabel("distance transmitter - receiver (km, log scale)")
    ax.set_ylabel("received power (dBm, mean over windows)")
    return fig


def outcomes_figure(out):
    """Every attempt of the dataset's jobs: accepted, or rejected by its first failed rule."""
    fig, ax = new_figure(PLOTS["rejections"],
                         f"{out.total:,} attempts in {out.jobs:,} job{'s' * (out.jobs != 1)}")
    labels = ["accepted", *(f"rejected: {k}" for k in out.rejected)]
    values = [out.accepted, *out.rejected.values()]
    y = np.arange(len(labels))[::-1]
    if out.total:
        bars = ax.barh(y, values, color=[ACCEPTED_COLOR] + [BAR_COLOR] * len(out.rejected))
        ax.bar_label(bars, [f"{v:,} ({_percent(v, out.total)})" for v in values], padding=3,
                     fontsize=9)
        ax.set_xlim(0, max(values) * 1.3)
        ax.set_yticks(y)
        ax.set_yticklabels(labels)
    else:
        nothing_to_show(ax, "No attempts recorded: no job of this dataset has run a batch")
    ax.set_xlabel("attempts")
    ax.set_ylabel("outcome (a rejection names the first rule failed)")
    return fig


def _percent(part: int, whole: int) -> str:
    share = part / whole
    return "<0.1%" if 0 < share < 0.001 else f"{share:.1%}"
