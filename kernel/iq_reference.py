"""The NumPy reference of the iq_raw signals and their features: slow, plain, written to be read.
``tests/test_iq_reference.py`` holds ``kernel.iq`` and ``kernel.iq_features`` to it.

It shares with the kernel only the data contract (the draw layout of ``kernel.iq`` and the
random-number hash of ``kernel.reference``); the maths is written independently: phasors as
``np.exp`` at the FFT's own frequencies (the kernel runs recurrences), the envelope of the
syllables as a lookup over all samples, sorting and ``np.median`` for the spectral estimates.
"""

from __future__ import annotations

import math

import numpy as np

from . import iq as K
from . import iq_features as F
from .layout import (FADING_FLOOR, L_FADING0, L_RICE_K, R_DIST, R_FADING, R_FOFF, R_LOS, R_RSSI,
                     STREAM_LINK)
from .reference import (GOLDEN, U64, attempt_keys, exponential, mix64, normal, slot_keys,
                        uniform)
from .rng import PHASE

TWO_PI = 2.0 * math.pi


def key_of(seed: int, attempt: int) -> np.ndarray:
    return attempt_keys(seed, np.array([attempt], dtype=U64))


def draws(skey, subs) -> np.ndarray:
    return np.array([uniform(skey, s)[0] for s in subs])


def audio(key, fs, t0, n) -> tuple[np.ndarray, int]:
    """(audio at t0 + i / fs, kind), peak 1."""
    ck = slot_keys(key, K.STREAM_IQ, 0)
    u = draws(ck, range(K.C_START + 1))
    kind = K.KIND_VOICE if u[K.C_KIND] < 0.9 else K.KIND_TONE if u[K.C_KIND] < 0.95 else K.KIND_DTMF
    t = t0 + np.arange(n) / fs
    if kind == K.KIND_TONE:
        return np.sin(TWO_PI * (800.0 + 400.0 * u[K.C_TONE]) * t), kind
    if kind == K.KIND_DTMF:
        lo = K.DTMF_LOW[min(int(4 * u[K.C_DTMF_LOW]), 3)]
        hi = K.DTMF_HIGH[min(int(4 * u[K.C_DTMF_HIGH]), 3)]
        return 0.5 * (np.sin(TWO_PI * lo * t) + np.sin(TWO_PI * hi * t)), kind
    formants = (0.6 * np.sin(TWO_PI * (500 + 300 * u[K.C_F1]) * t + TWO_PI * u[K.C_P1])
                + 0.3 * np.sin(TWO_PI * (1000 + 1000 * u[K.C_F2]) * t + TWO_PI * u[K.C_P2])
                + 0.1 * np.sin(TWO_PI * (2500 + 500 * u[K.C_F3]) * t + TWO_PI * u[K.C_P3]))
    # Syllables: a pause of U(20, 130) ms, then U(100, 250) ms of voice, from a start up to
    # 0.4 s before t0; 10 ms ramps.
    sk = slot_keys(key, K.STREAM_IQ, 1)
    edges, at, k = [], t0 - 0.4 * u[K.C_START], 0
    while at <= t[-1]:
        a = at + 0.02 + 0.11 * uniform(sk, 2 * k)[0]
        b = a + 0.10 + 0.15 * uniform(sk, 2 * k + 1)[0]
        edges.append((a, b))
        at, k = b, k + 1
    envelope = np.zeros(n)
    for a, b in edges:
        inside = (t >= a) & (t < b)
        envelope[inside] = np.minimum(1.0, np.minimum((t[inside] - a) / 0.01, (b - t[inside]) / 0.01))
    x = envelope * formants
    emphasized = x + K.PRE_EMPHASIS_S * fs * np.diff(x, prepend=0.0)
    peak = np.abs(emphasized).max()
    return (emphasized / peak if peak > 0 else emphasized), kind


def transmitted(key, fs, capture, bandwidth_hz, lead_in) -> np.ndarray:
    m, _ = audio(key, fs, -lead_in / fs, lead_in + capture)
    phase = np.cumsum(TWO_PI * K.DEVIATION_PER_BANDWIDTH * bandwidth_hz / fs * m)
    return np.exp(1j * phase)


def channel(key, j, fs, n, delay_s) -> np.ndarray:
    hk = slot_keys(key, K.STREAM_IQ, 2 + j)
    f = np.fft.fftfreq(n, 1.0 / fs)
    echoes = 2 if uniform(hk, K.H_ECHOES)[0] < 0.5 else 3
    h = np.ones(n, complex)
    for e in range(echoes):
        d = (0.5 + 4.5 * uniform(hk, K.H_DELAY0 + e)[0]) * 1e-6
        gain = 10 ** ((-25 + 15 * uniform(hk, K.H_POWER0 + e)[0]) / 20) * np.exp(
            1j * TWO_PI * uniform(hk, K.H_PHASE0 + e)[0])
        h += gain * np.exp(-1j * TWO_PI * f * d)
    return h * np.exp(-1j * TWO_PI * f * delay_s)


def window_powers_db(key, j, rx_row, chunks, fading_on) -> np.ndarray:
    """The budget's window powers (dBm), drawn as kernel.attempt.window_powers draws them."""
    base = rx_row[R_RSSI] - rx_row[R_FADING]
    if not fading_on:
        return np.full(chunks, base)
    lk = slot_keys(key, STREAM_LINK, j)
    subs = L_FADING0 + np.arange(chunks)
    keys = np.repeat(lk, chunks)
    if rx_row[R_LOS] > 0.5:
        k_lin = 10 ** ((6 + 4 * uniform(lk, L_RICE_K)[0]) / 10)
        a, b = math.sqrt(k_lin / (k_lin + 1)), math.sqrt(0.5 / (k_lin + 1))
        power = (a + b * normal(keys, subs)) ** 2 + (b * normal(keys, subs + PHASE)) ** 2
    else:
        power = exponential(keys, subs)
    return base + 10 * np.log10(np.maximum(power, FADING_FLOOR))


def noise(key, j, capture) -> np.ndarray:
    """Receiver j's standard complex normals: blocks of 32 samples, two subs each."""
    nk = slot_keys(key, K.STREAM_NOISE, j)
    i = np.arange(capture)
    block_keys = mix64(nk + (i // K.NOISE_BLOCK + 1).astype(U64) * GOLDEN)
    sub = 2 * (i % K.NOISE_BLOCK)
    return normal(block_keys, sub) + 1j * normal(block_keys, sub + 1)


def synthesize_sample(seed, attempt, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                      noise_dbm) -> np.ndarray:
    """(n_rx, capture) complex64: what kernel.iq.synthesize_sample writes."""
    key = key_of(seed, attempt)
    lead_in = int(math.ceil(K.LEAD_IN_S * fs))
    spectrum = np.fft.fft(transmitted(key, fs, capture, bandwidth_hz, lead_in))
    sigma = math.sqrt(10 ** ((noise_dbm + 10 * math.log10(fs / bandwidth_hz)) / 10) / 2)
    t = np.arange(capture) / fs
    out = np.empty((n_rx, capture), np.complex64)
    for j in range(n_rx):
        delay = rx[j, R_DIST] * 1000.0 / K.SPEED_OF_LIGHT_M_S
        y = np.fft.ifft(spectrum * channel(key, j, fs, len(spectrum), delay))[lead_in:]
        y = y / np.sqrt(np.mean(np.abs(y) ** 2))
        hk = slot_keys(key, K.STREAM_IQ, 2 + j)
        windows = window_powers_db(key, j, rx[j], chunks, fading_on)
        gains = np.empty(capture, complex)
        per = capture // chunks
        for w in range(chunks):
            last = capture if w == chunks - 1 else (w + 1) * per
            gains[w * per:last] = np.sqrt(10 ** (windows[w] / 10)) * np.exp(
                1j * TWO_PI * uniform(hk, K.H_WINDOW_PHASE0 + w)[0])
        signal = y * gains * np.exp(1j * TWO_PI * rx[j, R_FOFF] * t)
        out[j] = (signal + sigma * noise(key, j, capture)).astype(np.complex64)
    return out


# ---- features ---------------------------------------------------------------------------------

def window_features(x, fs, bandwidth_hz) -> dict:
    """The features of one window, as kernel.iq_features defines them."""
    n = len(x)
    w = np.hanning(n + 1)[:n]  # the periodic Hann window
    p = np.abs(np.fft.fft(x * w)) ** 2 / (fs * np.sum(w ** 2))
    f = np.fft.fftfreq(n, 1.0 / fs)
    df = fs / n
    outside = np.abs(f) > 0.6 * bandwidth_hz
    if outside.sum() >= F.MIN_OUT_OF_BAND:
        n0 = np.median(p[outside]) / math.log(2)
    else:
        q = F.QUIET_SHARE
        n0 = np.sort(p)[:max(int(q * n), 1)].mean() / ((1 - (1 - q) * (1 - math.log(1 - q))) / q)
    in_band = np.abs(f) <= bandwidth_hz / 2 + 1e-9 * df
    order = np.argsort(f[in_band])
    fb, pb = f[in_band][order], p[in_band][order]
    rssi = pb.sum() * df
    noise_power = n0 * bandwidth_hz
    s = np.maximum(pb - n0, 0.0)
    cum = np.cumsum(s) / s.sum()
    env = np.abs(x) / np.sqrt(np.mean(np.abs(x) ** 2))
    snr = 10 * math.log10(max(rssi / noise_power - 1, 1e-3))
    b_c = coherence(x, fs, bandwidth_hz, n0)
    return {
        "rssi_dbm": 10 * math.log10(rssi), "snr_db": snr,
        "noise_floor_dbm": 10 * math.log10(noise_power),
        "freq_offset_hz": (s * fb).sum() / s.sum(),
        "occupied_bw_hz": fb[min(np.searchsorted(cum, 0.995), len(fb) - 1)]
        - fb[np.searchsorted(cum, 0.005)] + df,
        "psd_dbm_per_hz": 10 * math.log10(rssi) - 10 * math.log10(bandwidth_hz),
        "spectral_centroid_hz": (p * f).sum() / p.sum(),
        "rolloff_hz": fb[min(np.searchsorted(cum, 0.85), len(fb) - 1)],
        "envelope_mean": env.mean(), "envelope_std": env.std(), "envelope_max": env.max(),
        "papr_db": 10 * math.log10(np.max(np.abs(x) ** 2) / np.mean(np.abs(x) ** 2)),
        "zero_crossing_rate": np.mean(np.diff(np.signbit(x.real).astype(int)) != 0),
        "coherence_bw_hz": b_c, "delay_spread_us": math.sqrt(3) / (TWO_PI * b_c) * 1e6,
        "confidence": min(max(snr / F.CONFIDENCE_FULL_SNR_DB, 0.0), 1.0),
    }


def coherence(x, fs, bandwidth_hz, n0) -> float:
    seg = min(F.WELCH_SEGMENT, len(x))
    w = np.hanning(seg + 1)[:seg]
    starts = range(0, len(x) - seg + 1, seg // 2)
    psd = np.mean([np.abs(np.fft.fft(x[a:a + seg] * w)) ** 2 for a in starts], axis=0) / (
        fs * np.sum(w ** 2))
    df = fs / seg
    edge = int(bandwidth_hz / 2 / df)
    s = np.maximum(psd[np.arange(-edge, edge + 1) % seg] - n0, 0.0)
    dev = s - s.mean()
    cov = np.array([np.sum(dev[:len(s) - k] * dev[k:]) for k in range(len(s))])
    if cov[1] <= 0:
        return len(s) * df
    below = np.flatnonzero(cov[2:] <= 0.5 * cov[1])
    return (below[0] + 2) * df if below.size else len(s) * df
