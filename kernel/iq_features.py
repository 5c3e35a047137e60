"""Features measured from a receiver's IQ, per measurement window and over the windows (in
progress with the iq_raw dataset type; docs/SIGNALS.md defines each estimator).

Per window of n IQ samples x (sqrt(mW)) at sample rate fs, with the channel bandwidth B:

* the periodogram P[k] = |FFT(x w)|^2 / (fs sum w^2) (mW/Hz, Hann window w), bins at
  f_k = k fs / n (the upper half negative), bin width df = fs / n; the channel band is |f| <= B/2;
* ``noise density`` N0: the median of the bins outside the band (|f| > 0.6 B) divided by ln 2
  (a noise bin of the periodogram is exponential, whose median is ln 2 times its mean); when the
  sample rate leaves fewer than 32 such bins, the mean of the quietest 10 % of all bins divided
  by the same share of an exponential's mean (0.05176), which the signal biases upward;
* ``rssi_dbm``: the power in the band, 10 log10(sum over the band of P df);
* ``noise_floor_dbm``: 10 log10(N0 B);
* ``snr_db``: 10 log10(max(rssi / noise - 1, 1e-3)) (linear powers): the band's power less the
  noise's, over the noise's; at most -30 dB below;
* the band's signal spectrum S[k] = max(P[k] - N0, 0) in the band: ``freq_offset_hz`` its
  centroid; ``occupied_bw_hz`` the width holding 99 % of it (0.5 % cut off each side, as ITU-R
  SM.328 defines occupied bandwidth); ``rolloff_hz`` the frequency below which 85 % of it lies;
* ``spectral_centroid_hz``: the centroid of P over all bins (noise included);
* ``psd_dbm_per_hz``: rssi less 10 log10(B), the mean density in the band;
* the envelope a = |x| over its rms: ``envelope_mean``, ``envelope_std``, ``envelope_max``;
  ``papr_db``: 10 log10(max |x|^2 / mean |x|^2);
* ``zero_crossing_rate``: the share of consecutive samples whose in-phase parts differ in sign;
* ``coherence_bw_hz``: the smallest frequency lag at which the autocovariance of the band's
  signal spectrum, estimated by Welch's method (Hann segments of 512 samples, half overlapping,
  less N0), falls to half its value at a lag of one bin (the band's width when it never does);
  ``delay_spread_us``: sqrt(3) / (2 pi B_c), the rms delay spread of an exponential power-delay
  profile whose frequency correlation halves at B_c; with a channel of a few kHz it resolves
  delay spreads of tens of microseconds, not the few microseconds of local echoes;
* ``confidence``: snr_db / 30 clipped to [0, 1].

Over the windows each feature is aggregated as mean, std, min, max.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .defaults import IQ_AGGREGATES as AGGREGATES, IQ_FEATURES as FEATURES
from .jit import njit

(F_RSSI, F_SNR, F_NOISE, F_FOFF, F_OBW, F_PSD, F_CENTROID, F_ROLLOFF, F_ENV_MEAN, F_ENV_STD,
 F_ENV_MAX, F_PAPR, F_ZCR, F_DELAY_SPREAD, F_COHERENCE, F_CONFIDENCE) = range(len(FEATURES))
LN2 = math.log(2.0)
QUIET_SHARE = 0.10
QUIET_MEAN = 1.0 - (1.0 - QUIET_SHARE) * (1.0 - math.log(1.0 - QUIET_SHARE))  # x 1/q below
MIN_OUT_OF_BAND = 32
CONFIDENCE_FULL_SNR_DB = 30.0


@njit
def hann_window(n):
    """The periodic Hann window of n points and the sum of its squares."""
    hann = np.empty(n)
    norm = 0.0
    for i in range(n):
        hann[i] = 0.5 - 0.5 * math.cos(2.0 * math.pi * i / n)
        norm += hann[i] * hann[i]
    return hann, norm


@njit
def window_features(x, fs, bandwidth_hz, out):
    """The features of one window of IQ (complex) into out[F_*]."""
    hann, norm = hann_window(x.shape[0])
    welch, welch_norm = hann_window(min(WELCH_SEGMENT, x.shape[0]))
    windowed_features(x, fs, bandwidth_hz, out, hann, norm, welch, welch_norm)


@njit
def windowed_features(x, fs, bandwidth_hz, out, hann, norm, welch, welch_norm):
    """window_features with the window's Hann tables given (a capture's windows share them:
    computing 10,000 cosines per capture again for each was a fifth of the measuring)."""
    n = x.shape[0]
    spectrum = np.fft.fft(x * hann)
    df = fs / n
    p = np.empty(n)
    f = np.empty(n)
    for k in range(n):
        p[k] = (spectrum[k].real ** 2 + spectrum[k].imag ** 2) / (fs * norm)
        f[k] = (k if k < (n + 1) // 2 else k - n) * df
    half = 0.5 * bandwidth_hz
    outside = np.abs(f) > 0.6 * bandwidth_hz
    if outside.sum() >= MIN_OUT_OF_BAND:
        n0 = np.median(p[outside]) / LN2
    else:
        quiet = np.sort(p)[:max(int(QUIET_SHARE * n), 1)]
        n0 = quiet.mean() / (QUIET_MEAN / QUIET_SHARE)
    # The band's bins in ascending frequency (the FFT's upper half is the negative side).
    edge = int(half / df)
    band = np.empty(2 * edge + 1, np.int64)
    for i in range(2 * edge + 1):
        band[i] = (i - edge) % n
    band_power = p[band].sum() * df
    noise_power = n0 * bandwidth_hz
    out[F_RSSI] = 10.0 * math.log10(max(band_power, 1e-300))
    out[F_NOISE] = 10.0 * math.log10(max(noise_power, 1e-300))
    snr_lin = band_power / noise_power - 1.0 if noise_power > 0.0 else 1e3
    out[F_SNR] = 10.0 * math.log10(max(snr_lin, 1e-3))
    out[F_PSD] = out[F_RSSI] - 10.0 * math.log10(bandwidth_hz)
    s = np.maximum(p[band] - n0, 0.0)
    fb = f[band]
    total = s.sum()
    if total > 0.0:
        out[F_FOFF] = (s * fb).sum() / total
        cum = np.cumsum(s) / total
        lo = fb[np.searchsorted(cum, 0.005)]
        hi = fb[min(np.searchsorted(cum, 0.995), fb.shape[0] - 1)]
        out[F_OBW] = hi - lo + df
        out[F_ROLLOFF] = fb[min(np.searchsorted(cum, 0.85), fb.shape[0] - 1)]
    else:
        out[F_FOFF] = 0.0
        out[F_OBW] = 0.0
        out[F_ROLLOFF] = 0.0
    out[F_CENTROID] = (p * f).sum() / p.sum() if p.sum() > 0.0 else 0.0
    out[F_COHERENCE] = welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, welch, welch_norm)
    out[F_DELAY_SPREAD] = math.sqrt(3.0) / (2.0 * math.pi * out[F_COHERENCE]) * 1e6
    # Envelope and sign changes.
    power = 0.0
    peak = 0.0
    crossings = 0
    for i in range(n):
        a2 = x[i].real * x[i].real + x[i].imag * x[i].imag
        power += a2
        peak = max(peak, a2)
        if i and (x[i].real >= 0.0) != (x[i - 1].real >= 0.0):
            crossings += 1
    mean_power = power / n
    rms = math.sqrt(mean_power)
    env_sum = env_sq = 0.0
    for i in range(n):
        a = math.sqrt(x[i].real * x[i].real + x[i].imag * x[i].imag) / rms if rms > 0 else 0.0
        env_sum += a
        env_sq += a * a
    env_mean = env_sum / n
    out[F_ENV_MEAN] = env_mean
    out[F_ENV_STD] = math.sqrt(max(env_sq / n - env_mean * env_mean, 0.0))
    out[F_ENV_MAX] = math.sqrt(peak) / rms if rms > 0 else 0.0
    out[F_PAPR] = 10.0 * math.log10(peak / mean_power) if mean_power > 0 else 0.0
    out[F_ZCR] = crossings / (n - 1)
    out[F_CONFIDENCE] = min(max(out[F_SNR] / CONFIDENCE_FULL_SNR_DB, 0.0), 1.0)


WELCH_SEGMENT = 512


@njit
def coherence_bandwidth(x, fs, bandwidth_hz, n0):
    """The smallest frequency lag at which the autocovariance of the band's signal spectrum
    (Welch: Hann segments of WELCH_SEGMENT samples, half overlapping, less the noise density)
    falls to half its value at a lag of one bin (lag 0 carries the estimate's own variance);
    the band's width when it never does."""
    hann, norm = hann_window(min(WELCH_SEGMENT, x.shape[0]))
    return welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, hann, norm)


@njit
def welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, hann, norm):
    """coherence_bandwidth with the segments' Hann table given."""
    n = x.shape[0]
    seg = hann.shape[0]
    psd = np.zeros(seg)
    count = 0
    for start in range(0, n - seg + 1, seg // 2):
        spectrum = np.fft.fft(x[start:start + seg] * hann)
        for k in range(seg):
            psd[k] += (spectrum[k].real ** 2 + spectrum[k].imag ** 2) / (fs * norm)
        count += 1
    df = fs / seg
    half = 0.5 * bandwidth_hz
    lo_bin = -int(half / df)
    m = 2 * int(half / df) + 1
    s = np.empty(m)
    for i in range(m):
        k = (lo_bin + i) % seg
        s[i] = max(psd[k] / count - n0, 0.0)
    dev = s - s.mean()
    c1 = (dev[:m - 1] * dev[1:]).sum()
    if c1 <= 0.0:
        return m * df
    for lag in range(2, m):
        if (dev[:m - lag] * dev[lag:]).sum() <= 0.5 * c1:
            return lag * df
    return m * df


@njit
def capture_features(x, windows, fs, bandwidth_hz, out):
    """Each feature of a capture split into ``windows`` measurement windows, aggregated:
    out[feature, aggregate] with aggregates (mean, std, min, max)."""
    n = x.shape[0]
    per = n // windows
    values = np.empty((windows, len(FEATURES)))
    hann, norm = hann_window(per)
    welch, welch_norm = hann_window(min(WELCH_SEGMENT, per))
    for w in range(windows):
        last = n if w == windows - 1 else (w + 1) * per
        if last - w * per != per:  # the last window takes the remainder: its own tables
            hann, norm = hann_window(last - w * per)
            welch, welch_norm = hann_window(min(WELCH_SEGMENT, last - w * per))
        windowed_features(x[w * per:last].astype(np.complex128), fs, bandwidth_hz, values[w],
                          hann, norm, welch, welch_norm)
    for k in range(len(FEATURES)):
        column = values[:, k]
        mean = column.mean()
        out[k, 0] = mean
        out[k, 1] = math.sqrt(max(((column - mean) ** 2).mean(), 0.0))
        out[k, 2] = column.min()
        out[k, 3] = column.max()


@njit(parallel=True)
def features_many(x, n_rx, windows, fs, bandwidth_hz, out):
    """capture_features of every present receiver of every sample (samples in parallel):
    x (samples, receivers, capture) -> out (samples, receivers, FEATURES, AGGREGATES), NaN
    in padding slots."""
    for k in numba.prange(x.shape[0]):
        for j in range(x.shape[1]):
            if j < n_rx[k]:
                capture_features(x[k, j], windows, fs, bandwidth_hz, out[k, j])
            else:
                out[k, j, :, :] = np.nan


def measure(x, n_rx, windows: int, sample_rate_hz: float, bandwidth_hz: float,
            threads: int | None = None) -> np.ndarray:
    """The features of ``iq.synthesize``'s output: (samples, receivers, FEATURES, AGGREGATES)."""
    from .jit import kernel_launch
    out = np.empty(x.shape[:2] + (len(FEATURES), len(AGGREGATES)))
    with kernel_launch(threads):
        features_many(x, np.asarray(n_rx, np.int64), int(windows), float(sample_rate_hz),
                      float(bandwidth_hz), out)
    return out
