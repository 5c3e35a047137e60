"""Features measured from IQ (kernel/iq_features.py) on signals whose answers are known: a pure
tone at a known offset and SNR, pure noise, a known two-path channel, and synthesized samples
against their link budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heimdall_synth.kernel import iq_features as F
from tests.test_iq import strong_samples

FS, N, B = 50_000.0, 4_000, 12_500.0


def noise(rng, n, density_mw_per_hz):
    sigma = math.sqrt(density_mw_per_hz * FS / 2.0)
    return sigma * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


def features(x):
    out = np.empty(len(F.FEATURES))
    F.window_features(x.astype(np.complex128), FS, B, out)
    return dict(zip(F.FEATURES, out))


def test_a_tone_at_a_known_offset_and_snr():
    rng = np.random.default_rng(1)
    n0 = 10 ** (-150 / 10)  # mW/Hz: -150 dBm/Hz, a noise floor of -109 dBm in 12.5 kHz
    power_dbm, offset = -80.0, 1_730.0
    t = np.arange(N) / FS
    x = math.sqrt(10 ** (power_dbm / 10)) * np.exp(2j * np.pi * offset * t + 0.3j) + noise(rng, N, n0)
    got = features(x)
    noise_dbm = 10 * math.log10(n0 * B)
    assert got["rssi_dbm"] == pytest.approx(10 * math.log10(10 ** (power_dbm / 10) + n0 * B), abs=0.2)
    assert got["noise_floor_dbm"] == pytest.approx(noise_dbm, abs=0.5)
    assert got["snr_db"] == pytest.approx(power_dbm - noise_dbm, abs=0.5)
    assert got["freq_offset_hz"] == pytest.approx(offset, abs=FS / N)
    assert got["occupied_bw_hz"] <= 6 * FS / N  # Hann's main lobe: 4 bins
    assert got["envelope_std"] < 0.1 and got["papr_db"] < 2.0  # the noise's peaks only
    assert got["confidence"] == pytest.approx(got["snr_db"] / 30.0)


def test_pure_noise():
    rng = np.random.default_rng(2)
    n0 = 10 ** (-150 / 10)
    got = features(noise(rng, N, n0))
    assert got["noise_floor_dbm"] == pytest.approx(10 * math.log10(n0 * B), abs=0.5)
    assert got["rssi_dbm"] == pytest.approx(10 * math.log10(n0 * B), abs=0.5)
    assert got["snr_db"] < -5.0 and got["confidence"] == 0.0
    assert got["zero_crossing_rate"] == pytest.approx(0.5, abs=0.03)
    # a complex normal's envelope is Rayleigh: mean sqrt(pi) / 2 of its rms
    assert got["envelope_mean"] == pytest.approx(math.sqrt(math.pi) / 2, abs=0.02)
    assert abs(got["spectral_centroid_hz"]) < 500.0


@pytest.mark.parametrize("delay_us", [100.0, 200.0])
def test_a_two_path_channel_has_its_coherence_bandwidth(delay_us):
    """White noise through h = delta(t) + 0.8 delta(t - tau), far above the receiver noise:
    |H(f)|^2 = 1.64 + 1.6 cos(2 pi f tau), whose autocovariance halves at 1 / (6 tau)."""
    rng = np.random.default_rng(3)
    lag = int(round(delay_us * 1e-6 * FS))
    s = rng.standard_normal(8 * N + lag) + 1j * rng.standard_normal(8 * N + lag)
    x = (s[lag:] + 0.8 * s[:-lag]) * 1e-4 + noise(rng, 8 * N, 1e-20)
    values = [features(w)["coherence_bw_hz"] for w in np.array_split(x, 8)]
    tau = lag / FS
    assert np.median(values) == pytest.approx(1 / (6 * tau), rel=0.2)
    spread = np.median([features(w)["delay_spread_us"] for w in np.array_split(x, 8)])
    assert spread == pytest.approx(math.sqrt(3) / (2 * math.pi) * 6 * tau * 1e6, rel=0.25)


def test_synthesized_samples_measure_their_link_budget():
    """At high SNR the IQ's RSSI per window is the budget's window power within 0.5 dB and its
    frequency offset the budget's within 50 Hz (the FM's audio is not symmetric per window)."""
    cfg, batch, rows, x = strong_samples(4)
    checked = 0
    for s, row in enumerate(rows):
        for j in range(batch.n_receivers[row]):
            if batch.snr_db[row, j] < 40.0:
                continue
            agg = np.empty((len(F.FEATURES), 4))
            F.capture_features(x[s, j], cfg.num_chunks, FS, cfg.bandwidth_hz, agg)
            mean_rssi_lin = np.mean(10 ** (np.array([
                features(w)["rssi_dbm"] for w in np.array_split(x[s, j], cfg.num_chunks)]) / 10))
            assert 10 * math.log10(mean_rssi_lin) == pytest.approx(batch.rssi_dbm[row, j], abs=0.5)
            assert agg[F.F_FOFF, 0] == pytest.approx(batch.freq_offset_hz[row, j], abs=50.0)
            assert agg[F.F_NOISE, 0] == pytest.approx(cfg.noise_floor_dbm, abs=1.0)
            checked += 1
    assert checked >= 5
