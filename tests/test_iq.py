"""Signals of iq_raw samples (kernel/iq.py): the synthesizer against answers known in advance.

A carrier through a receiver comes out at its frequency offset, power and SNR; two receivers'
captures are as far apart in time as their propagation delays; each measurement window holds
the link budget's window power; the bytes are a pure function of (seed, attempt, receiver).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from heimdall_synth.kernel import GenerationConfig, iq, run_attempts
from heimdall_synth.kernel.layout import R_DIST, R_FADING, R_FOFF, R_LOS, R_RSSI, RX_FIELDS
from heimdall_synth.kernel.rng import attempt_key as _attempt_key

FS, CAPTURE, BANDWIDTH = 50_000.0, 10_000, 12_500.0


def attempt_key(seed, attempt):
    """The kernel's key of an attempt, as a uint64 (Numba returns a Python int, which the next
    call would type as int64 when it fits)."""
    return np.uint64(_attempt_key(np.uint64(seed), np.uint64(attempt)))


def test_a_carrier_comes_out_at_its_offset_power_and_snr():
    key = attempt_key(np.uint64(7), np.uint64(3))
    lead_in = int(math.ceil(iq.LEAD_IN_S * FS))
    spectrum = np.fft.fft(np.ones(lead_in + CAPTURE, np.complex128))  # an unmodulated carrier
    offset, power_dbm, noise_dbm = 1234.5, -80.0, -120.0
    out = np.empty(CAPTURE, np.complex64)
    iq.receive(key, 0, spectrum, FS, CAPTURE, lead_in, 1e-4, offset, np.full(5, power_dbm),
               noise_dbm, BANDWIDTH, out)
    x = out.astype(np.complex128)
    freqs = np.fft.fftfreq(CAPTURE, 1 / FS)
    assert abs(freqs[np.argmax(np.abs(np.fft.fft(x)))] - offset) <= FS / CAPTURE
    t = np.arange(CAPTURE) / FS
    tone = np.exp(2j * np.pi * offset * t)
    # per window the carrier has its own phase: fit it window by window
    residual = np.concatenate([w - np.vdot(c, w) / np.vdot(c, c) * c for w, c in
                               zip(np.array_split(x, 5), np.array_split(tone, 5))])
    signal = np.mean(np.abs(x) ** 2) - np.mean(np.abs(residual) ** 2)
    noise_expected = 10 ** ((noise_dbm + 10 * math.log10(FS / BANDWIDTH)) / 10)
    assert 10 * math.log10(signal) == pytest.approx(power_dbm, abs=0.05)
    assert np.mean(np.abs(residual) ** 2) == pytest.approx(noise_expected, rel=0.05)


def strong_samples(count: int, seed: int = 9):
    """(cfg, batch, rows, IQ) of the first ``count`` accepted samples of a 60 dBm transmitter
    (most links far above the noise), 50 kHz x 200 ms."""
    cfg = GenerationConfig.from_dict({"tx_power_dbm": 60.0})
    batch = run_attempts(cfg, seed, 0, 50 * count)
    rows = np.flatnonzero(batch.valid)[:count]
    return cfg, batch, rows, iq.synthesize(batch, rows, seed, cfg.num_chunks, FS, 200,
                                           cfg.bandwidth_hz, cfg.noise_floor_dbm)


def receivers(*distances_km, rssi=-70.0):
    rx = np.full((len(distances_km), len(RX_FIELDS)), np.nan)
    rx[:, R_DIST] = distances_km
    rx[:, R_RSSI], rx[:, R_FADING], rx[:, R_FOFF], rx[:, R_LOS] = rssi, 0.0, 0.0, 1.0
    return rx


@pytest.mark.parametrize("attempt", [11, 12, 13])
def test_two_receivers_are_as_far_apart_in_time_as_their_delays(attempt):
    """Cross-correlating two receivers' IQ recovers the difference of their propagation
    delays within one sample (150 km: 500 us, 25 samples at 50 kHz)."""
    rx = receivers(20.0, 170.0)
    out = np.zeros((2, CAPTURE), np.complex64)
    iq.synthesize_sample(np.uint64(5), np.uint64(attempt), rx, 2, 5, False, FS, CAPTURE,
                         BANDWIDTH, -130.0, out)
    near, far = out.astype(np.complex128)
    lags = np.arange(-60, 61)
    corr = [abs(np.vdot(near[max(0, -k):CAPTURE - max(0, k)], far[max(0, k):CAPTURE - max(0, -k)]))
            for k in lags]
    expected = 150.0e3 / iq.SPEED_OF_LIGHT_M_S * FS
    assert abs(lags[int(np.argmax(corr))] - expected) <= 1.0


def test_each_window_holds_the_link_budgets_window_power():
    """At high SNR the IQ's power in each measurement window is the budget's window power
    (its rssi less its fading plus that window's fading draw) within 0.5 dB."""
    cfg, batch, rows, x = strong_samples(6)
    checked = 0
    for s, row in enumerate(rows):
        key = attempt_key(np.uint64(9), np.uint64(batch.attempt_index[row]))
        for j in range(batch.n_receivers[row]):
            if batch.snr_db[row, j] < 40.0:
                continue
            windows = np.empty(cfg.num_chunks)
            iq.window_dbm(key, j, batch.rx[row, j], cfg.num_chunks, True, windows)
            got = [10 * math.log10(np.mean(np.abs(w.astype(np.complex128)) ** 2))
                   for w in np.array_split(x[s, j], cfg.num_chunks)]
            np.testing.assert_allclose(got, windows, atol=0.5)
            checked += 1
    assert checked >= 10
    # the budget's windows differ (fading), and the IQ follows them
    assert np.ptp(windows) > 0.5


def test_iq_bytes_are_a_pure_function_of_the_sample():
    cfg = GenerationConfig.from_dict({})
    batch = run_attempts(cfg, 4, 0, 100)
    rows = np.flatnonzero(batch.valid)[:8]
    args = (4, cfg.num_chunks, FS, 200, cfg.bandwidth_hz, cfg.noise_floor_dbm)
    one = iq.synthesize(batch, rows, *args, threads=1)
    two = iq.synthesize(batch, rows, *args, threads=2)
    assert one.tobytes() == two.tobytes()
    alone = iq.synthesize(batch, rows[5:6], *args)  # one sample on its own, from another batch
    later = run_attempts(cfg, 4, batch.attempt_index[rows[5]], 1)
    assert alone.tobytes() == one[5:6].tobytes()
    assert iq.synthesize(later, [0], *args).tobytes() == one[5:6].tobytes()
    padding = one[:, batch.n_receivers[rows].min():]
    assert not np.any(padding[batch.n_receivers[rows] == batch.n_receivers[rows].min()])


#: SHA-256 of the IQ bytes of the first accepted sample of seed 4 (default configuration,
#: 50 kHz x 200 ms): a change that alters signals changes this (and is a new model version).
GOLDEN_IQ = "09ac0e2ab86946e6cc6e3b58d1206a4773452561399f79194e17eb0bbfa1bf9a"


def test_golden_iq():
    cfg = GenerationConfig.from_dict({})
    batch = run_attempts(cfg, 4, 0, 20)
    row = int(np.flatnonzero(batch.valid)[0])
    x = iq.synthesize(batch, [row], 4, cfg.num_chunks, FS, 200, cfg.bandwidth_hz,
                      cfg.noise_floor_dbm)
    assert hashlib.sha256(x.tobytes()).hexdigest() == GOLDEN_IQ


def test_the_content_is_voice_tone_or_dtmf_in_their_shares_and_fm_keeps_its_deviation():
    kinds = np.array([iq.audio_kind(attempt_key(np.uint64(1), np.uint64(a)))
                      for a in range(4000)])
    shares = np.bincount(kinds, minlength=3) / len(kinds)
    np.testing.assert_allclose(shares, [0.90, 0.05, 0.05], atol=0.015)
    key = attempt_key(np.uint64(1), np.uint64(int(np.flatnonzero(kinds == iq.KIND_VOICE)[0])))
    s = iq.transmitted(key, FS, CAPTURE, BANDWIDTH, 0)
    inst = np.diff(np.unwrap(np.angle(s))) * FS / (2 * np.pi)
    assert np.max(np.abs(inst)) == pytest.approx(iq.DEVIATION_PER_BANDWIDTH * BANDWIDTH, rel=0.01)
    assert np.allclose(np.abs(s), 1.0)
