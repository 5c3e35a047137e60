"""Statistical sanity of the default configuration, printed and held to bands (docs/MODEL.md)."""

import numpy as np
import pytest

from heimdall_synth.kernel import GenerationConfig, run_attempts
from tests.helpers import WIDE_AREA

N = 200_000


@pytest.fixture(scope="module")
def default_batch():
    return run_attempts(GenerationConfig.from_dict({}), 99, 0, N)


def test_acceptance_rate(default_batch):
    rate = default_batch.valid.mean()
    off = default_batch.rejection_counts()["tx_off"] / N
    print(f"acceptance {rate:.4f}; tx_off {off:.4f}; {default_batch.rejection_counts()}")
    assert 0.85 <= rate <= 0.95
    assert 0.07 <= off <= 0.13  # duty cycle U(0.8, 1.0): 10 % off on average


def test_stronger_farther_receiver_share(default_batch):
    """A farther receiver stronger than a nearer one by more than 12 dB.

    Counted per pair of receivers in a valid sample: at most 10 %. (Counted as "any pair in
    the sample", the share is far higher: a 7-receiver sample has 21 pairs, and the model's
    clutter, terrain, shadowing and yagi gains alone spread a link by about 8 dB; see
    docs/MODEL.md.)
    """
    v = default_batch.accepted()
    d, p = v.distance_km, v.rssi_dbm
    farther = d[:, :, None] > d[:, None, :]
    inverted = farther & (p[:, :, None] > p[:, None, :] + 12.0)
    pairs = farther.sum()
    share = inverted.sum() / pairs
    nearest = np.argmin(d, axis=1)
    vs_nearest = (p.max(axis=1) > p[np.arange(len(p)), nearest] + 12.0).mean()
    any_pair = inverted.any(axis=(1, 2)).mean()
    print(f"inverted pairs {share:.4f}; samples whose nearest receiver is beaten by 12 dB "
          f"{vs_nearest:.4f}; samples with any inverted pair {any_pair:.4f}")
    assert 0.01 <= share <= 0.10


def test_cross_polarized_share(default_batch):
    on = ~np.isnan(default_batch.polarization_db)
    share = (default_batch.polarization_db[on] >= 10.0).mean()
    # The default stations are vertical; a transmitter is horizontal with P = 0.02 * 0.05.
    print(f"cross-polarized links {share:.5f} (expected 0.001)")
    assert share == pytest.approx(0.001, abs=0.0003)


def test_sporadic_e_share():
    fixed = run_attempts(GenerationConfig.from_dict({}), 5, 0, 50_000)
    assert np.nansum(fixed.sporadic_e_db > 0) == 0  # no 500-2500 km links in the network
    wide = run_attempts(GenerationConfig.from_dict(WIDE_AREA), 5, 0, 50_000)
    on = ~np.isnan(wide.sporadic_e_db)
    share = (wide.sporadic_e_db[on] > 0).mean()
    in_range = on & (wide.distance_km >= 500) & (wide.distance_km <= 2500)
    print(f"sporadic-E links {share:.5f} overall, {(wide.sporadic_e_db[in_range] > 0).mean():.5f}"
          " of 500-2500 km links")
    assert 0 < share < 0.01
    assert not (wide.sporadic_e_db[on & ~in_range] > 0).any()
    off_band = run_attempts(GenerationConfig.from_dict({**WIDE_AREA, "frequency_mhz": 300.0}),
                            5, 0, 20_000)
    assert np.nansum(off_band.sporadic_e_db > 0) == 0  # only 28-225 MHz


def test_terms_switch_off(default_batch):
    cfg = GenerationConfig.from_dict({"enable_diffraction": False, "enable_shadowing": False,
                                      "enable_antenna_patterns": False, "enable_fading": False,
                                      "enable_polarization": False, "enable_clutter": False,
                                      "enable_meteorological": False})
    b = run_attempts(cfg, 99, 0, 20_000)
    assert (b.tx_clutter_db == 0).all() and (default_batch.tx_clutter_db > 0).any()
    for name in ("diffraction_db", "shadowing_db", "fading_db", "tx_gain_db", "rx_gain_db",
                 "polarization_db", "absorption_db", "troposphere_db"):
        on_values = getattr(b, name)[~np.isnan(getattr(b, name))]
        assert (on_values == 0).all(), name
        assert np.nanmax(np.abs(getattr(default_batch, name))) > 0, name
    # the same attempts differ only through the switched terms: distances are identical
    np.testing.assert_array_equal(b.distance_km, default_batch.distance_km[:20_000])


def test_receiver_fields_are_consistent(default_batch):
    v = default_batch.accepted()
    np.testing.assert_allclose(v.snr_db, v.rssi_dbm - v.noise_floor_dbm)
    np.testing.assert_allclose(v.psd_dbm_per_hz, v.rssi_dbm - 10 * np.log10(12500.0))
    assert (v.rssi_min_dbm <= v.rssi_dbm + 1e-9).all() and (v.rssi_dbm <= v.rssi_max_dbm + 1e-9).all()
    assert (v.n_detected == v.signal_present.sum(axis=1)).all()
    assert (v.n_detected >= 3).all() and (v.gdop <= 150).all() and np.isfinite(v.crb_m).all()
    assert ((v.overall_confidence >= 0) & (v.overall_confidence <= 1)).all()
    assert (np.abs(v.tx_power_dbm - 37.0) <= 3.0).all()
    assert (np.abs(v.freq_offset_hz) < 50 + 6 * 2.0).all()
