"""Pictures of one iq_raw sample's signal, as every receiver recorded it: its spectrum, its
spectrogram and its power envelope over the capture, as PNG bytes of the report's size.

They let a person see what the IQ of a sample holds before training on it: where the signal
sits in the channel and how far above the noise floor, how it changes over the capture (voice
syllables, a tone, a DTMF pair; the fading between measurement windows), and which receivers
hear it at all. The IQ is the sample's as any reader gets it (``engine.signals.sample_signal``:
synthesized again, or read from its stored captures).

Units follow the IQ's: amplitude in sqrt(mW), so |x|^2 is a power in mW. The spectrum is a
power spectral density in dBm/Hz, the same quantity as the features' ``psd_dbm_per_hz``, so it
reads against the noise floor's density ``noise_floor_dbm - 10 log10(bandwidth_hz)`` (the noise
floor is given in the channel bandwidth; the synthesized noise is white over the sample rate).

This module stays light when imported (the app and the OpenAPI document import
``SIGNAL_PLOTS``): NumPy and matplotlib are imported on first use.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

#: The pictures, in page order (the file and URL stem).
SIGNAL_PLOTS = ("spectrum", "spectrogram", "envelope")
SIGNAL_TITLES = {
    "spectrum": "Spectrum at each receiver",
    "spectrogram": "Spectrogram at each receiver",
    "envelope": "Power over the capture at each receiver",
}

#: FFT lengths: the spectrum's Welch segments (fine frequency resolution), the spectrogram's
#: (time resolution of a few ms at the usual sample rates). Shorter captures get shorter ones.
SPECTRUM_NFFT, SPECTROGRAM_NFFT, MIN_NFFT = 512, 256, 32
#: Welch segments wanted at least: fewer make a noisy estimate (its spread is ~5.6/sqrt(K) dB).
MIN_SEGMENTS = 8
#: Spectrogram columns (times) and envelope points drawn at most: a 5 s capture at 2 MHz has
#: 10 million IQ samples, far more than the picture's pixels.
MAX_COLUMNS, MAX_POINTS = 400, 500
#: The envelope's blocks last this long at least: the power of a few noise samples swings by
#: tens of dB, hiding the signals' levels.
MIN_BLOCK_S = 0.0002
#: Spectrogram panels at most (receivers with the highest SNR first beyond that).
MAX_PANELS = 16
#: Segments transformed at once: memory stays bounded whatever the capture's length.
SEGMENTS_PER_BLOCK = 2048
#: A reading of exactly zero power (a padding slot) is drawn at this density, not at -inf.
FLOOR_MW = 1e-30

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
NOISE_COLOR, CHANNEL_COLOR, WINDOW_COLOR = "#333333", "#d8d8d0", "#555555"

# A sample's pictures never change (its IQ is a function of the job's configuration and seed,
# and a dataset is append-only): they are cached by dataset, its name (in the titles), sample
# and picture. One lock makes the three requests of a page wait for one synthesis, not three.
_SIGNAL_LOCK = threading.Lock()
#: Reads for a request synthesize on one thread: they never compete with a job's cores.
READ_THREADS = 1


_PNG_CACHE = None
#: Pictures kept: 32 samples' three, 50-150 KB each.
PNGS_KEPT = 96


def _png_cache():
    """The pictures' cache, made on first use (``relief`` imports NumPy)."""
    global _PNG_CACHE
    if _PNG_CACHE is None:
        from heimdall_synth.service.report.relief import PngCache
        _PNG_CACHE = PngCache(PNGS_KEPT)
    return _PNG_CACHE


# ------------------------------------------------------------------------ the numbers drawn

def fft_length(n: int, longest: int, segments: int = MIN_SEGMENTS) -> int:
    """The FFT length for a capture of ``n`` IQ samples: ``longest``, halved while the capture
    holds fewer than ``segments`` such segments, never below ``MIN_NFFT`` nor above ``n``."""
    nfft = longest
    while nfft > MIN_NFFT and n < segments * nfft:
        nfft //= 2
    return max(1, min(nfft, n))


def _hann(nfft: int):
    """The periodic Hann window, as ``kernel.iq_features`` weights its periodograms."""
    import numpy as np
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nfft) / nfft)


def _offsets(nfft: int, sample_rate_hz: float):
    """Frequency offsets of the FFT bins in increasing order (``fftshift``'s), exact."""
    import numpy as np
    return (np.arange(nfft) - nfft // 2) * (sample_rate_hz / nfft)


def _segment_powers(x, nfft: int, hop: int):
    """Yields (first segment, |FFT(segment * Hann)|^2 of consecutive segments) of one capture,
    ``SEGMENTS_PER_BLOCK`` segments at a time (bins in FFT order)."""
    import numpy as np
    window = _hann(nfft)
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[::hop]
    for first in range(0, len(frames), SEGMENTS_PER_BLOCK):
        block = frames[first:first + SEGMENTS_PER_BLOCK].astype(np.complex128) * window
        spectrum = np.fft.fft(block, axis=1)
        yield first, spectrum.real ** 2 + spectrum.imag ** 2


def psd_dbm_per_hz(iq, sample_rate_hz: float, nfft: int | None = None):
    """Welch's estimate of each receiver's power spectral density: Hann-weighted segments of
    ``nfft`` IQ samples overlapping by half, their periodograms |FFT|^2 / (fs sum w^2) averaged.

    ``iq``: complex, (receivers, n) or (n,), in sqrt(mW). Returns (frequency offsets from the
    carrier in Hz, increasing; PSD in dBm/Hz, (receivers, nfft) or (nfft,)). White noise of
    power P mW reads P / fs mW/Hz in every bin, so P / nfft mW per bin of width fs / nfft; a
    tone's power lies in the bins around its frequency (Hann's main lobe: 4 bins).
    """
    import numpy as np
    x = np.asarray(iq)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    n = x.shape[1]
    nfft = fft_length(n, SPECTRUM_NFFT) if nfft is None else int(nfft)
    if not 1 <= nfft <= n:
        raise ValueError(f"nfft {nfft} must be between 1 and the capture's {n} IQ samples")
    hop = max(1, nfft // 2)
    scale = sample_rate_hz * float(np.sum(_hann(nfft) ** 2))
    psd = np.empty((x.shape[0], nfft))
    for r in range(x.shape[0]):
        total, count = np.zeros(nfft), 0
        for _, power in _segment_powers(x[r], nfft, hop):
            total += power.sum(axis=0)
            count += len(power)
        psd[r] = np.fft.fftshift(total / (count * scale))
    offsets = _offsets(nfft, sample_rate_hz)
    dbm = 10.0 * np.log10(np.maximum(psd, FLOOR_MW))
    return offsets, (dbm[0] if single else dbm)


def spectrogram_dbm_per_hz(iq, sample_rate_hz: float, nfft: int | None = None,
                           max_columns: int = MAX_COLUMNS):
    """Each receiver's PSD over time: Hann-weighted segments of ``nfft`` IQ samples
    overlapping by half, consecutive segments averaged into at most ``max_columns`` columns.

    Returns (column edges in s, frequency offsets in Hz (increasing), PSD in dBm/Hz
    (receivers, nfft, columns)).
    """
    import numpy as np
    x = np.atleast_2d(np.asarray(iq))
    n = x.shape[1]
    nfft = fft_length(n, SPECTROGRAM_NFFT, segments=32) if nfft is None else int(nfft)
    hop = max(1, nfft // 2)
    segments = 1 + (n - nfft) // hop
    columns = min(segments, max_columns)
    # segment s goes to column s * columns // segments: runs of equal length (+-1)
    column_of = np.arange(segments) * columns // segments
    per_column = np.bincount(column_of, minlength=columns)
    scale = sample_rate_hz * float(np.sum(_hann(nfft) ** 2))
    out = np.empty((x.shape[0], nfft, columns))
    for r in range(x.shape[0]):
        total = np.zeros((columns, nfft))
        for first, power in _segment_powers(x[r], nfft, hop):
            np.add.at(total, column_of[first:first + len(power)], power)
        psd = np.fft.fftshift(total / (per_column[:, None] * scale), axes=1)
        out[r] = 10.0 * np.log10(np.maximum(psd, FLOOR_MW)).T
    # a column spans from its first segment's start to its last segment's end
    starts = np.flatnonzero(np.r_[True, np.diff(column_of) > 0]) * hop
    edges = np.r_[starts, (segments - 1) * hop + nfft] / sample_rate_hz
    offsets = _offsets(nfft, sample_rate_hz)
    return edges, offsets, out


def envelope_dbm(iq, sample_rate_hz: float, max_points: int = MAX_POINTS):
    """Each receiver's power over the capture: |x|^2 averaged over consecutive blocks of
    ``ceil(n / max_points)`` IQ samples (``MIN_BLOCK_S`` at least), in dBm. Returns (block
    centres in s, dBm (receivers, blocks), the block length in IQ samples)."""
    import numpy as np
    x = np.atleast_2d(np.asarray(iq))
    n = x.shape[1]
    block = min(n, max(1, math.ceil(n / max_points), round(MIN_BLOCK_S * sample_rate_hz)))
    blocks = n // block  # the remainder (< one block) is left out
    out = np.empty((x.shape[0], blocks))
    for r in range(x.shape[0]):
        v = x[r, :blocks * block].astype(np.complex128)
        power = (v.real ** 2 + v.imag ** 2).reshape(blocks, block).mean(axis=1)
        out[r] = 10.0 * np.log10(np.maximum(power, FLOOR_MW))
    centres = (np.arange(blocks) * block + block / 2.0) / sample_rate_hz
    return centres, out, block


def noise_density_dbm_per_hz(signal) -> float:
    """The noise floor as a density: ``noise_floor_dbm`` is the noise in the channel bandwidth."""
    return signal.noise_floor_dbm - 10.0 * math.log10(signal.bandwidth_hz)


# ------------------------------------------------------------------------ the pictures

def _plain(text: str) -> str:
    """Text drawn as typed: matplotlib reads a pair of '$' as a formula ('$5 to $10')."""
    return str(text).replace("$", r"\$")


def _color(k: int) -> str:
    return _COLORS[k % len(_COLORS)]


def _receiver_label(rx: dict) -> str:
    snr = rx["snr_db"]
    text = f"{rx['name']} ({snr:.1f} dB SNR)" if math.isfinite(snr) else f"{rx['name']}"
    return _plain(text if rx["signal_present"] else f"{text}, not detected")


def _subtitle(signal, dataset_name: str | None, detail: str) -> str:
    """Which sample (dataset, index, carrier), then its capture (length, sample rate) and how
    the picture reads it: two lines."""
    n = signal.iq.shape[1]
    where = f"dataset {dataset_name}, " if dataset_name else ""
    return _plain(f"{where}sample {signal.sample_index:,} at {signal.frequency_hz / 1e6:.4f} MHz, "
                  f"{len(signal.receivers)} receivers\n{n:,} IQ samples at "
                  f"{signal.sample_rate_hz / 1e3:g} kHz ({1e3 * n / signal.sample_rate_hz:g} ms); "
                  f"{detail}")


def _title(plot: str, signal) -> str:
    return f"{SIGNAL_TITLES[plot]}, sample {signal.sample_index:,}"


def _legend(fig, count: int) -> None:
    fig.legend(loc="outside lower center", ncols=min(3, max(1, count)), fontsize=7,
               frameon=False)


def spectrum_figure(signal, dataset_name: str | None = None):
    """Each receiver's PSD (Welch) against the offset from the carrier, over the channel band
    (shaded) and the noise floor's density (a line)."""
    import numpy as np
    from heimdall_synth.service.report.plots import new_figure

    n = signal.iq.shape[1]
    nfft = fft_length(n, SPECTRUM_NFFT)
    offsets, psd = psd_dbm_per_hz(signal.iq, signal.sample_rate_hz, nfft)
    segments = 1 + (n - nfft) // max(1, nfft // 2)
    df = signal.sample_rate_hz / nfft
    fig, ax = new_figure(_title("spectrum", signal), _subtitle(
        signal, dataset_name, f"Welch: {segments:,} Hann segments of {nfft} ({df:,.0f} Hz bins)"))
    half_band = signal.bandwidth_hz / 2e3
    ax.axvspan(-half_band, half_band, color=CHANNEL_COLOR, alpha=0.6, lw=0, zorder=1,
               label=f"channel bandwidth ({signal.bandwidth_hz / 1e3:g} kHz)")
    khz = offsets / 1e3
    for k, rx in enumerate(signal.receivers):
        ax.plot(khz, psd[k], color=_color(k), lw=1.0, zorder=3, label=_receiver_label(rx))
    noise = noise_density_dbm_per_hz(signal)
    ax.axhline(noise, color=NOISE_COLOR, ls="--", lw=1.2, zorder=4,
               label=f"noise floor: {noise:.1f} dBm/Hz ({signal.noise_floor_dbm:g} dBm in "
                     f"{signal.bandwidth_hz / 1e3:g} kHz)")
    finite = psd[np.isfinite(psd)]
    top = max(float(finite.max()) if finite.size else noise, noise) + 5.0
    ax.set_ylim(min(noise - 15.0, top - 30.0), top)
    ax.set_xlim(khz[0], khz[-1])
    ax.set_xlabel("frequency offset from the carrier (kHz)")
    ax.set_ylabel("power spectral density (dBm/Hz)")
    _legend(fig, len(signal.receivers) + 2)
    return fig


def spectrogram_figure(signal, dataset_name: str | None = None):
    """One small panel per receiver: PSD over time and frequency offset, one colour scale."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from heimdall_synth.service.report.plots import DPI, FIGSIZE_IN, PLOT_FACE

    receivers = list(range(len(signal.receivers)))
    if len(receivers) > MAX_PANELS:  # the strongest, in receiver order
        strongest = sorted(receivers, key=lambda k: -_finite(signal.receivers[k]["snr_db"]))
        receivers = sorted(strongest[:MAX_PANELS])
    edges, offsets, power = spectrogram_dbm_per_hz(signal.iq[receivers], signal.sample_rate_hz)
    nfft = len(offsets)
    df = signal.sample_rate_hz / nfft
    shown = (f"{len(receivers)} of {len(signal.receivers)} receivers (highest SNR); "
             if len(receivers) < len(signal.receivers) else "")
    detail = (f"{shown}Hann segments of {nfft} ({1e3 * nfft / signal.sample_rate_hz:.3g} ms, "
              f"{df:,.0f} Hz bins)")

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{_title('spectrogram', signal)}\n{_subtitle(signal, dataset_name, detail)}",
                 fontsize=11)
    cols = math.ceil(math.sqrt(len(receivers) * 1.5))
    rows = math.ceil(len(receivers) / cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    noise = noise_density_dbm_per_hz(signal)
    finite = power[np.isfinite(power)]
    vmax = float(finite.max()) if finite.size else noise
    vmin = min(noise - 6.0, vmax - 10.0)
    extent = (1e3 * edges[0], 1e3 * edges[-1], (offsets[0] - df / 2) / 1e3,
              (offsets[-1] + df / 2) / 1e3)
    image = None
    for ax, k, grid in zip(axes, receivers, power):
        ax.set_facecolor(PLOT_FACE)
        # columns may differ in length by a segment: drawn on their true edges
        image = ax.pcolormesh(1e3 * edges, (np.r_[offsets, offsets[-1] + df] - df / 2) / 1e3,
                              grid, cmap="viridis", vmin=vmin, vmax=vmax, shading="flat",
                              rasterized=True)
        ax.set_title(signal.receivers[k]["name"], fontsize=7, parse_math=False, pad=2)
        ax.tick_params(labelsize=6, length=2, pad=1)
    for ax in axes[len(receivers):]:
        ax.set_axis_off()
    axes[0].set_xlim(extent[0], extent[1])
    axes[0].set_ylim(extent[2], extent[3])
    fig.supxlabel("time since the capture's start (ms)", fontsize=9)
    fig.supylabel("frequency offset from the carrier (kHz)", fontsize=9)
    bar = fig.colorbar(image, ax=axes.tolist(), shrink=0.9, pad=0.01)
    bar.set_label(f"PSD (dBm/Hz); noise floor {noise:.1f}", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return fig


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def envelope_figure(signal, dataset_name: str | None = None):
    """Each receiver's power over the capture (short block means), the noise's power over the
    sample rate, and the measurement windows the features are measured in (their edges as
    vertical lines, each window numbered)."""
    from heimdall_synth.service.report.plots import new_figure

    centres, dbm, block = envelope_dbm(signal.iq, signal.sample_rate_hz)
    ms = 1e3 * centres
    edges_ms = 1e3 * signal.window_edges / signal.sample_rate_hz
    fig, ax = new_figure(_title("envelope", signal), _subtitle(
        signal, dataset_name, f"mean power over blocks of {block:,} IQ samples "
                              f"({1e3 * block / signal.sample_rate_hz:.3g} ms)"))
    for k, rx in enumerate(signal.receivers):
        ax.plot(ms, dbm[k], color=_color(k), lw=0.9, zorder=3, label=_receiver_label(rx))
    noise = signal.noise_floor_dbm + 10.0 * math.log10(signal.sample_rate_hz
                                                      / signal.bandwidth_hz)
    ax.axhline(noise, color=NOISE_COLOR, ls="--", lw=1.2, zorder=4,
               label=f"noise: {noise:.1f} dBm over the {signal.sample_rate_hz / 1e3:g} kHz "
                     "sample rate")
    for k, edge in enumerate(edges_ms):
        ax.axvline(edge, color=WINDOW_COLOR, ls=":", lw=1.0, zorder=2,
                   label="measurement window edges" if k == 0 else None)
    labels = ax.get_xaxis_transform()  # x in data, y in the plot area (0 bottom, 1 top)
    windows = len(edges_ms) - 1
    for w in range(windows):
        text = f"window {w + 1}" if windows <= 8 else f"{w + 1}"
        ax.text((edges_ms[w] + edges_ms[w + 1]) / 2.0, 0.985, text, transform=labels,
                ha="center", va="top", fontsize=7 if windows <= 8 else 6, color=WINDOW_COLOR,
                zorder=5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                "alpha": 0.7})
    top = max(float(dbm.max()), noise) + 8.0  # room for the windows' labels
    ax.set_ylim(min(noise - 12.0, top - 30.0), top)
    ax.set_xlim(edges_ms[0], edges_ms[-1])
    ax.set_xlabel("time since the capture's start (ms)")
    ax.set_ylabel("received power (dBm)")
    _legend(fig, len(signal.receivers) + 2)
    return fig


_DRAW = {"spectrum": spectrum_figure, "spectrogram": spectrogram_figure,
         "envelope": envelope_figure}


def _unknown(plot: str):
    from heimdall_synth.service.engine.request import NotFoundError
    return NotFoundError(f"no signal picture {plot!r}; they are {', '.join(SIGNAL_PLOTS)}",
                         field="plot")


def signal_pngs(signal, dataset_name: str | None = None, plots=SIGNAL_PLOTS) -> dict:
    """{plot: PNG bytes} of a ``SampleSignal``, drawn under the report's lock (matplotlib's
    caches are not safe to fill from several threads)."""
    from heimdall_synth.service.report.plots import to_png
    from heimdall_synth.service.report.render import _RENDER_LOCK

    out = {}
    for plot in plots:
        if plot not in _DRAW:
            raise _unknown(plot)
        with _RENDER_LOCK:
            out[plot] = to_png(_DRAW[plot](signal, dataset_name))
    return out


def render_signal_png(conn, dataset_id, sample_index: int, plot: str) -> bytes:
    """One picture of sample ``sample_index`` of an iq_raw dataset as PNG bytes. NotFoundError
    names ``plot``, ``dataset_id`` or ``sample_index``; NotIQError (``dataset_type``) for a
    dataset of another type. A miss draws the sample's three pictures at once (a page asks for
    all three), from one read of its IQ."""
    from heimdall_synth.service.engine.signals import iq_dataset, sample_signal

    if plot not in SIGNAL_PLOTS:
        raise _unknown(plot)
    dataset = iq_dataset(conn, dataset_id)
    cache = _png_cache()
    key = (str(dataset["id"]), dataset["name"], int(sample_index))
    png = cache.get((*key, plot))
    if png is not None:
        return png
    with _SIGNAL_LOCK:
        png = cache.get((*key, plot))  # drawn while this request waited
        if png is not None:
            return png
        signal = sample_signal(conn, dataset["id"], sample_index, threads=READ_THREADS)
        pngs = signal_pngs(signal, dataset["name"])
        for name, made in pngs.items():
            cache.put((*key, name), made)
    return pngs[plot]


def write_sample_signal_pngs(conn, dataset_id, out_dir, sample_index: int = 0) -> list[Path]:
    """The three pictures of one sample as ``out_dir/sample-<index>-<plot>.png`` (the folder
    is created; files of the same names are replaced, never left half-written). Returns the
    paths in ``SIGNAL_PLOTS`` order. Raises as ``render_signal_png`` (a dataset without samples:
    NotFoundError naming sample_index)."""
    from heimdall_synth.service.engine.signals import iq_dataset, sample_signal

    dataset = iq_dataset(conn, dataset_id)
    signal = sample_signal(conn, dataset["id"], sample_index)
    pngs = signal_pngs(signal, dataset["name"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in SIGNAL_PLOTS:
        path = out_dir / f"sample-{int(sample_index)}-{plot}.png"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(pngs[plot])
        partial.replace(path)
        written.append(path)
    return written
