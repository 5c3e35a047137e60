"""kernel/fft.py: the FFT written for both targets against numpy.fft.

Error measure: max |ours - numpy| / max |numpy| over random complex data. Measured on x86-64:
at most 5e-16 on the Stockham lengths, at most 1.1e-15 on the Bluestein ones (37 and up), the
same in the simulator. The tests allow TOL = 2e-14, about 20 times the worst and far below what
a wrong twiddle or index gives (errors of order 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from heimdall_synth.kernel import fft
from tests.helpers import in_simulator

TOL = 2e-14

#: Radix 2, 3, 4, 5 and generic stages, the threshold's both sides (31 direct, 37 Bluestein),
#: generic radices after other stages (289 = 17 * 17, 1001 = 7 * 11 * 13), large smooth lengths,
#: and primes and their multiples above the threshold.
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 12, 13, 17, 31, 37, 64, 97, 100, 289, 512, 1000, 1001, 2000, 2048,
           10000, 10200, 10400, 10007, 2 * 10007, 3 * 4099]


def random_complex(n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) + 1j * rng.standard_normal(n)


def rel_error(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module")
def plans():
    plans_i, plans_t = fft.fft_plans(LENGTHS)
    return plans_i, plans_t, np.empty(fft.work_size(plans_i), np.complex128)


@pytest.mark.parametrize("n", LENGTHS)
def test_forward_and_inverse_equal_numpys(plans, n):
    x = random_complex(n, n)
    out = np.empty(n, np.complex128)
    fft.fft_forward(x, out, *plans)
    assert rel_error(out, np.fft.fft(x)) <= TOL
    fft.fft_inverse(x, out, *plans)
    assert rel_error(out, np.fft.ifft(x)) <= TOL


def test_the_threshold_picks_the_method():
    plans_i, _ = fft.fft_plans([31 * 64, 37, 2 * 37, 10200, 10007])
    method = dict(zip(plans_i[:, fft.P_N].tolist(), plans_i[:, fft.P_METHOD].tolist()))
    assert fft.BLUESTEIN_ABOVE == 31
    assert method == {31 * 64: fft.METHOD_STOCKHAM, 37: fft.METHOD_BLUESTEIN,
                      74: fft.METHOD_BLUESTEIN, 10200: fft.METHOD_STOCKHAM,
                      10007: fft.METHOD_BLUESTEIN}
    row = plans_i[plans_i[:, fft.P_N] == 10007][0]
    m = int(row[fft.P_M])  # Bluestein's M: the smallest 5-smooth length >= 2n - 1
    assert m == 20250 and row[fft.P_WORK] == 2 * m
    assert np.prod(row[fft.P_FACTORS:fft.P_FACTORS + row[fft.P_NFACTORS]]) == m


def test_lengths_sharing_one_plan_set_and_work():
    lengths = [10200, 2000, 512, 2001, 2003]      # 2001 = 3 * 23 * 29; 2003 prime: Bluestein
    plans_i, plans_t = fft.fft_plans(lengths + [512])
    assert plans_i.shape[0] == len(lengths)       # one row per distinct length
    work = np.empty(fft.work_size(plans_i), np.complex128)
    assert fft.work_size(plans_i) == plans_i[:, fft.P_WORK].max()
    for n in lengths + lengths[::-1]:             # any order: the work holds no state
        x = random_complex(n, 7 * n)
        out = np.empty(n, np.complex128)
        fft.fft_forward(x, out, plans_i, plans_t, work)
        assert rel_error(out, np.fft.fft(x)) <= TOL, n
        fft.fft_inverse(x, out, plans_i, plans_t, work)
        assert rel_error(out, np.fft.ifft(x)) <= TOL, n


@pytest.mark.parametrize("n", [12, 17, 97, 2000])
def test_views_in_and_out_and_x_untouched(plans, n):
    big_x = random_complex(3 * n + 5, n)
    x = big_x[5::3]                               # a strided view
    x_before = x.copy()
    big_out = np.full(2 * n + 6, 7 + 7j)
    out = big_out[3:3 + 2 * n:2]                  # a strided view of a larger array
    fft.fft_forward(x, out, *plans)
    assert np.array_equal(x, x_before)
    assert rel_error(out, np.fft.fft(x_before)) <= TOL
    untouched = np.ones(big_out.shape[0], bool)
    untouched[3:3 + 2 * n:2] = False
    assert np.all(big_out[untouched] == 7 + 7j)   # nothing written beside the view
    back = np.empty(n, np.complex128)
    fft.fft_inverse(out, back, *plans)
    assert rel_error(back, x_before) <= TOL      # inverse(forward(x)) == x


@pytest.mark.parametrize("n", [1, 8, 31, 37, 10007])
def test_inverse_of_forward_is_the_identity(plans, n):
    x = random_complex(n, 3 * n)
    spectrum, back = np.empty(n, np.complex128), np.empty(n, np.complex128)
    fft.fft_forward(x, spectrum, *plans)
    fft.fft_inverse(spectrum, back, *plans)
    assert rel_error(back, x) <= TOL


def test_what_cannot_be_done_gives_nan(plans):
    plans_i, plans_t, work = plans
    out = np.zeros(11, np.complex128)
    fft.fft_forward(random_complex(11, 0), out, *plans)    # no plan of length 11
    assert np.all(np.isnan(out.real) & np.isnan(out.imag))
    out = np.zeros(64, np.complex128)
    fft.fft_inverse(random_complex(64, 0), out, plans_i, plans_t, work[:63])  # work too small
    assert np.all(np.isnan(out))
    out = np.zeros(65, np.complex128)
    fft.fft_forward(random_complex(64, 0), out, *plans)    # out of another length
    assert np.all(np.isnan(out))


def test_lengths_are_checked_on_the_host():
    for bad in (0, -4, 2.0, True, "8"):
        with pytest.raises(ValueError):
            fft.fft_plans([8, bad])
    plans_i, plans_t = fft.fft_plans([])
    assert plans_i.shape == (0, fft.PLAN_WIDTH) and fft.work_size(plans_i) == 0


SIM_SCRIPT = """
import json, sys
import numpy as np
from numba import cuda
from heimdall_synth.kernel import fft, gpu
assert gpu.simulated()
twins = gpu.device_twins([fft.fft_forward, fft.fft_inverse])
forward, inverse = twins["fft_forward"], twins["fft_inverse"]

@cuda.jit
def transforms(x, out, back, plans_i, plans_t, work):
    i = cuda.grid(1)
    if i < x.shape[0]:  # a row of x, out, back and work per thread: views on the device
        forward(x[i], out[i], plans_i, plans_t, work[i])
        inverse(out[i], back[i], plans_i, plans_t, work[i])

lengths = json.loads(sys.argv[1])
plans_i, plans_t = fft.fft_plans(lengths)
work = np.zeros((2, fft.work_size(plans_i)), np.complex128)
result = {"twinned": sorted(twins)}
for n in lengths:
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n))
    out, back = np.zeros_like(x), np.zeros_like(x)
    with gpu.quiet_wraparound():
        transforms[1, 2](x, out, back, plans_i, plans_t, work)
    want = np.fft.fft(x, axis=1)
    result[str(n)] = [float(np.max(np.abs(out - want)) / np.max(np.abs(want))),
                      float(np.max(np.abs(back - x)) / np.max(np.abs(x)))]
print(json.dumps(result))
"""


def test_fft_runs_as_cuda_device_functions_in_the_simulator():
    """The same source twinned for CUDA: 12 (radix 3 and 4), 17 (the generic radix) and 37
    (Bluestein over M = 75: radix 5 and 3), two transforms at once on two threads, forward and
    inverse."""
    out = in_simulator(SIM_SCRIPT, json.dumps([12, 17, 37]))
    twinned = out.pop("twinned")
    assert {"fft_forward", "fft_inverse", "fft_run", "fft_stockham", "fft_radix_any",
            "fft_radix2", "fft_radix3", "fft_radix4", "fft_radix5"} <= set(twinned)
    assert set(out) == {"12", "17", "37"}
    for n, (forward_error, roundtrip_error) in out.items():
        assert forward_error <= TOL and roundtrip_error <= TOL, (n, forward_error,
                                                                 roundtrip_error)
