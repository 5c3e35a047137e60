"""kernel.iq and kernel.iq_features held to their NumPy reference (kernel/iq_reference.py),
sample by sample and feature by feature."""

from __future__ import annotations

import numpy as np
import pytest

from heimdall_synth.kernel import GenerationConfig, iq, iq_reference, run_attempts
from heimdall_synth.kernel import iq_features as F

FS = 50_000.0


@pytest.mark.parametrize("overrides, fading", [({}, True), ({"enable_fading": False}, False),
                                               ({"use_random_receivers": True}, True)])
def test_the_synthesis_equals_the_reference(overrides, fading):
    cfg = GenerationConfig.from_dict(overrides)
    batch = run_attempts(cfg, 21, 0, 60)
    rows = np.flatnonzero(batch.valid)[:12]
    fast = iq.synthesize(batch, rows, 21, cfg.num_chunks, FS, 100, cfg.bandwidth_hz,
                         cfg.noise_floor_dbm, fading=fading)
    kinds = set()
    for s, row in enumerate(rows):
        n = batch.n_receivers[row]
        slow = iq_reference.synthesize_sample(21, int(batch.attempt_index[row]), batch.rx[row],
                                              n, cfg.num_chunks, fading, FS, fast.shape[2],
                                              cfg.bandwidth_hz, cfg.noise_floor_dbm)
        kinds.add(iq_reference.audio(iq_reference.key_of(21, int(batch.attempt_index[row])),
                                     FS, 0.0, 2)[1])
        for j in range(n):
            rms = np.sqrt(np.mean(np.abs(slow[j].astype(complex)) ** 2))
            assert np.max(np.abs(fast[s, j] - slow[j])) <= 1e-5 * rms, (row, j)
    assert iq.KIND_VOICE in kinds


def test_the_features_equal_the_reference():
    cfg = GenerationConfig.from_dict({})
    batch = run_attempts(cfg, 22, 0, 40)
    rows = np.flatnonzero(batch.valid)[:6]
    x = iq.synthesize(batch, rows, 22, cfg.num_chunks, FS, 200, cfg.bandwidth_hz,
                      cfg.noise_floor_dbm)
    bin_hz = FS / (x.shape[2] // cfg.num_chunks)
    for s, row in enumerate(rows):
        for j in range(batch.n_receivers[row]):
            for window in np.array_split(x[s, j].astype(complex), cfg.num_chunks):
                fast = np.empty(len(F.FEATURES))
                F.window_features(window, FS, cfg.bandwidth_hz, fast)
                slow = iq_reference.window_features(window, FS, cfg.bandwidth_hz)
                for k, name in enumerate(F.FEATURES):
                    # quantiles of a spectrum may fall one bin apart on a tie
                    tol = bin_hz if name in ("occupied_bw_hz", "rolloff_hz") else 1e-6 * max(
                        1.0, abs(slow[name]))
                    assert fast[k] == pytest.approx(slow[name], abs=tol), name
