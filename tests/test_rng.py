"""The counter-based generator: purity, and the distributions of its uniforms, normals and
exponentials (the ziggurats must reproduce N(0, 1) and Exp(1), tails included)."""

import math

import numba
import numpy as np
import pytest

from heimdall_synth.kernel import reference, rng

N = 400_000


@numba.njit
def draws(seed, kind, n):
    out = np.empty(n)
    for a in range(n):
        key = rng.slot_key(rng.attempt_key(np.uint64(seed), np.uint64(a)), 2, a % 7)
        if kind == 0:
            out[a] = rng.uniform(key, 5)
        elif kind == 1:
            out[a] = rng.normal(key, 3)
        else:
            out[a] = rng.exponential(key, 40)
    return out


def ks_statistic(sample, cdf):
    x = np.sort(sample)
    f = cdf(x)
    i = np.arange(1, len(x) + 1)
    return max(np.max(i / len(x) - f), np.max(f - (i - 1) / len(x)))


def normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


KS_99 = 1.63 / math.sqrt(N)  # Kolmogorov-Smirnov critical value at the 1 % level


def test_uniform():
    u = draws(1, 0, N)
    assert (u > 0).all() and (u < 1).all()
    assert ks_statistic(u, lambda x: x) < KS_99
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / math.sqrt(N)


def test_normal_ziggurat():
    z = draws(2, 1, N)
    print(f"normal: mean {z.mean():.4f}, std {z.std():.4f}, KS {ks_statistic(z, normal_cdf):.5f}")
    assert abs(z.mean()) < 5 / math.sqrt(N) and abs(z.std() - 1) < 0.005
    assert ks_statistic(z, normal_cdf) < KS_99
    tail = np.mean(np.abs(z) > rng.ZN_R)  # the ziggurat's tail method: 2 (1 - Phi(3.4426))
    assert tail == pytest.approx(5.76e-4, rel=0.25)
    assert np.mean(np.abs(z) > 3.0) == pytest.approx(2.70e-3, rel=0.15)


def test_exponential_ziggurat():
    e = draws(3, 2, N)
    print(f"exponential: mean {e.mean():.4f}, KS {ks_statistic(e, lambda x: 1 - np.exp(-x)):.5f}")
    assert (e > 0).all() and abs(e.mean() - 1) < 0.01
    assert ks_statistic(e, lambda x: 1 - np.exp(-x)) < KS_99
    assert np.mean(e > rng.ZIG_R) == pytest.approx(math.exp(-rng.ZIG_R), rel=0.3)


def test_kernel_and_reference_generators_agree_on_rare_paths():
    keys = reference.attempt_keys(9, np.arange(20_000, dtype=np.uint64))
    sk = reference.slot_keys(keys, 2, 3)
    z_ref, e_ref = reference.normal(sk, 7), reference.exponential(sk, 9)
    z = np.array([rng.normal(k, 7) for k in sk])
    e = np.array([rng.exponential(k, 9) for k in sk])
    np.testing.assert_array_equal(z, z_ref)
    np.testing.assert_array_equal(e, e_ref)
    assert np.mean(np.abs(z) > rng.ZN_R) > 0  # the tail was reached


def test_draws_are_pure_functions_of_their_keys():
    key = rng.attempt_key(np.uint64(5), np.uint64(77))
    sk = rng.slot_key(key, 2, 3)
    assert rng.uniform(sk, 4) == rng.uniform(sk, 4)
    assert rng.uniform(sk, 4) != rng.uniform(sk, 5)
    assert rng.slot_key(key, 2, 3) != rng.slot_key(key, 1, 3) != rng.slot_key(key, 2, 4)
