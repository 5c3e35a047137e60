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
from .dft import dft, no_plans
from .jit import njit

N_FEATURES = len(FEATURES)
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
    return hann, hann_into(hann)


@njit
def hann_into(hann):
    """The periodic Hann window of hann's length into hann; returns the sum of its squares."""
    n = hann.shape[0]
    norm = 0.0
    for i in range(n):
        hann[i] = 0.5 - 0.5 * math.cos(2.0 * math.pi * i / n)
        norm += hann[i] * hann[i]
    return norm


#: The real scratch rows of the measuring functions, each (window length + 1) long: the
#: periodogram, its bins' frequencies, a sorting buffer, the band's signal spectrum, its
#: frequencies and cumulative share, the window's Hann table, Welch's Hann table and PSD.
(S_POWER, S_FREQ, S_SORT, S_SIGNAL, S_BAND_FREQ, S_CUMULATIVE, S_HANN, S_WELCH,
 S_WELCH_PSD) = range(9)
REAL_ROWS = 9
#: The complex scratch rows: the window (complex128), the windowed input, its spectrum.
C_WINDOW, C_INPUT, C_SPECTRUM = range(3)
COMPLEX_ROWS = 3


@njit
def scratch_for(n):
    """Scratch for measuring windows of up to n IQ samples (the CPU's; the device's comes in
    one allocation per batch)."""
    return np.empty((REAL_ROWS, n + 1)), np.empty((COMPLEX_ROWS, n + 1), np.complex128)


@njit
def window_features(x, fs, bandwidth_hz, out):
    """The features of one window of IQ (complex) into out[F_*]."""
    n = x.shape[0]
    real, cplx = scratch_for(n)
    hann = real[S_HANN, :n]
    norm = hann_into(hann)
    welch = real[S_WELCH, :min(WELCH_SEGMENT, n)]
    welch_norm = hann_into(welch)
    plans_i, plans_t, work = no_plans()
    windowed_features(x, fs, bandwidth_hz, out, hann, norm, welch, welch_norm, real, cplx,
                      plans_i, plans_t, work)


@njit
def heap_sort(a):
    """Sort a in place, ascending (no allocation: the device runs it; ties and order do not
    matter to the sorted values)."""
    n = a.shape[0]
    for start in range(n // 2 - 1, -1, -1):
        sift_down(a, start, n)
    for end in range(n - 1, 0, -1):
        a[0], a[end] = a[end], a[0]
        sift_down(a, 0, end)


@njit
def sift_down(a, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[child + 1] > a[child]:
            child += 1
        if a[root] >= a[child]:
            return
        a[root], a[child] = a[child], a[root]
        root = child


@njit
def first_at_least(cum, m, value):
    """The first index i < m with cum[i] >= value (cum ascending), m when none: numpy's
    searchsorted on the left."""
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit
def noise_density(p, f, bandwidth_hz, buffer):
    """N0: the median of the out-of-band bins over ln 2, or with too few of them the quietest
    QUIET_SHARE of all bins' mean over QUIET_MEAN / QUIET_SHARE (module docstring)."""
    n = p.shape[0]
    count = 0
    for k in range(n):
        if abs(f[k]) > 0.6 * bandwidth_hz:
            buffer[count] = p[k]
            count += 1
    if count >= MIN_OUT_OF_BAND:
        heap_sort(buffer[:count])
        half = count // 2
        median = buffer[half] if count % 2 else (buffer[half - 1] + buffer[half]) / 2
        return median / LN2
    for k in range(n):
        buffer[k] = p[k]
    heap_sort(buffer[:n])
    quiet = max(int(QUIET_SHARE * n), 1)
    total = 0.0
    for k in range(quiet):
        total += buffer[k]
    return total / quiet / (QUIET_MEAN / QUIET_SHARE)


@njit
def windowed_features(x, fs, bandwidth_hz, out, hann, norm, welch, welch_norm, real, cplx,
                      plans_i, plans_t, work):
    """window_features with the window's Hann tables given (a capture's windows share them:
    computing 10,000 cosines per capture again for each was a fifth of the measuring) and its
    scratch (``scratch_for``; it allocates nothing: the CUDA target runs it too) and the
    transform's plans and work (``kernel.dft``)."""
    n = x.shape[0]
    windowed = cplx[C_INPUT, :n]
    for i in range(n):
        windowed[i] = x[i] * hann[i]
    spectrum = cplx[C_SPECTRUM, :n]
    dft(windowed, spectrum, plans_i, plans_t, work)
    df = fs / n
    p = real[S_POWER, :n]
    f = real[S_FREQ, :n]
    for k in range(n):
        p[k] = (spectrum[k].real ** 2 + spectrum[k].imag ** 2) / (fs * norm)
        f[k] = (k if k < (n + 1) // 2 else k - n) * df
    half = 0.5 * bandwidth_hz
    n0 = noise_density(p, f, bandwidth_hz, real[S_SORT])
    # The band's bins in ascending frequency (the FFT's upper half is the negative side).
    edge = int(half / df)
    m = 2 * edge + 1
    s = real[S_SIGNAL, :m]
    fb = real[S_BAND_FREQ, :m]
    band_power = 0.0
    for i in range(m):
        k = (i - edge) % n
        band_power += p[k]
        s[i] = max(p[k] - n0, 0.0)
        fb[i] = f[k]
    band_power *= df
    noise_power = n0 * bandwidth_hz
    out[F_RSSI] = 10.0 * math.log10(max(band_power, 1e-300))
    out[F_NOISE] = 10.0 * math.log10(max(noise_power, 1e-300))
    snr_lin = band_power / noise_power - 1.0 if noise_power > 0.0 else 1e3
    out[F_SNR] = 10.0 * math.log10(max(snr_lin, 1e-3))
    out[F_PSD] = out[F_RSSI] - 10.0 * math.log10(bandwidth_hz)
    total = 0.0
    for i in range(m):
        total += s[i]
    if total > 0.0:
        moment = 0.0
        for i in range(m):
            moment += s[i] * fb[i]
        out[F_FOFF] = moment / total
        cum = real[S_CUMULATIVE, :m]
        running = 0.0
        for i in range(m):
            running += s[i]
            cum[i] = running / total
        lo = fb[min(first_at_least(cum, m, 0.005), m - 1)]
        hi = fb[min(first_at_least(cum, m, 0.995), m - 1)]
        out[F_OBW] = hi - lo + df
        out[F_ROLLOFF] = fb[min(first_at_least(cum, m, 0.85), m - 1)]
    else:
        out[F_FOFF] = 0.0
        out[F_OBW] = 0.0
        out[F_ROLLOFF] = 0.0
    p_sum = pf_sum = 0.0
    for k in range(n):
        pf_sum += p[k] * f[k]
        p_sum += p[k]
    out[F_CENTROID] = pf_sum / p_sum if p_sum > 0.0 else 0.0
    out[F_COHERENCE] = welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, welch, welch_norm,
                                                 real, cplx, plans_i, plans_t, work)
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
    real, cplx = scratch_for(x.shape[0])
    hann = real[S_WELCH, :min(WELCH_SEGMENT, x.shape[0])]
    norm = hann_into(hann)
    plans_i, plans_t, work = no_plans()
    return welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, hann, norm, real, cplx, plans_i,
                                     plans_t, work)


@njit
def welch_coherence_bandwidth(x, fs, bandwidth_hz, n0, hann, norm, real, cplx, plans_i,
                              plans_t, work):
    """coherence_bandwidth with the segments' Hann table and the scratch given."""
    n = x.shape[0]
    seg = hann.shape[0]
    psd = real[S_WELCH_PSD, :seg]
    for k in range(seg):
        psd[k] = 0.0
    segment = cplx[C_INPUT, :seg]
    spectrum = cplx[C_SPECTRUM, :seg]
    count = 0
    for start in range(0, n - seg + 1, seg // 2):
        for i in range(seg):
            segment[i] = x[start + i] * hann[i]
        dft(segment, spectrum, plans_i, plans_t, work)
        for k in range(seg):
            psd[k] += (spectrum[k].real ** 2 + spectrum[k].imag ** 2) / (fs * norm)
        count += 1
    df = fs / seg
    half = 0.5 * bandwidth_hz
    lo_bin = -int(half / df)
    m = 2 * int(half / df) + 1
    dev = real[S_SIGNAL, :m]  # the band's signal spectrum, then its deviations from the mean
    total = 0.0
    for i in range(m):
        k = (lo_bin + i) % seg
        dev[i] = max(psd[k] / count - n0, 0.0)
        total += dev[i]
    mean = total / m
    for i in range(m):
        dev[i] = dev[i] - mean
    c1 = 0.0
    for i in range(m - 1):
        c1 += dev[i] * dev[i + 1]
    if c1 <= 0.0:
        return m * df
    for lag in range(2, m):
        c = 0.0
        for i in range(m - lag):
            c += dev[i] * dev[i + lag]
        if c <= 0.5 * c1:
            return lag * df
    return m * df


@njit
def capture_features(x, windows, fs, bandwidth_hz, out):
    """Each feature of a capture split into ``windows`` measurement windows, aggregated:
    out[feature, aggregate] with aggregates (mean, std, min, max)."""
    n = x.shape[0]
    longest = n - (windows - 1) * (n // windows)
    real, cplx = scratch_for(longest)
    plans_i, plans_t, work = no_plans()
    capture_features_core(x, windows, fs, bandwidth_hz, out,
                          np.empty((windows, N_FEATURES)), real, cplx, plans_i, plans_t,
                          work)


@njit
def capture_features_core(x, windows, fs, bandwidth_hz, out, values, real, cplx, plans_i,
                          plans_t, work):
    """``capture_features`` with its scratch given: values (windows, FEATURES), and
    ``scratch_for`` the longest window (the last, which takes the remainder)."""
    n = x.shape[0]
    per = n // windows
    hann = real[S_HANN, :per]
    norm = hann_into(hann)
    welch = real[S_WELCH, :min(WELCH_SEGMENT, per)]
    welch_norm = hann_into(welch)
    for w in range(windows):
        last = n if w == windows - 1 else (w + 1) * per
        length = last - w * per
        if length != per:  # the last window takes the remainder: its own tables
            hann = real[S_HANN, :length]
            norm = hann_into(hann)
            welch = real[S_WELCH, :min(WELCH_SEGMENT, length)]
            welch_norm = hann_into(welch)
        window = cplx[C_WINDOW, :length]
        for i in range(length):
            v = x[w * per + i]
            window[i] = complex(v.real, v.imag)
        windowed_features(window, fs, bandwidth_hz, values[w], hann, norm, welch, welch_norm,
                          real, cplx, plans_i, plans_t, work)
    for k in range(N_FEATURES):
        total = 0.0
        low = high = values[0, k]
        for w in range(windows):
            total += values[w, k]
            low = min(low, values[w, k])
            high = max(high, values[w, k])
        mean = total / windows
        spread = 0.0
        for w in range(windows):
            spread += (values[w, k] - mean) ** 2
        out[k, 0] = mean
        out[k, 1] = math.sqrt(max(spread / windows, 0.0))
        out[k, 2] = low
        out[k, 3] = high


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
