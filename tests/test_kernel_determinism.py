"""Contract C4 at the kernel: every draw is a pure function of (seed, attempt, draw number)."""

import hashlib
import subprocess
import sys

import numba
import numpy as np
import pytest

from heimdall_synth.kernel import ConfigError, GenerationConfig, run_attempts

CONFIGS = {"fixed": {}, "random": {"use_random_receivers": True}}
SEED, COUNT = 123456789, 20_000


def digest(batch) -> str:
    return hashlib.sha256(batch.tobytes()).hexdigest()


@pytest.mark.parametrize("name", CONFIGS)
def test_thread_count_does_not_change_bytes(name):
    assert numba.config.NUMBA_NUM_THREADS >= 2, "the test needs two threads to compare"
    cfg = GenerationConfig.from_dict(CONFIGS[name])
    one = run_attempts(cfg, SEED, 0, COUNT, threads=1)
    two = run_attempts(cfg, SEED, 0, COUNT, threads=2)
    assert one.tobytes() == two.tobytes()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("cut", [1, 777, COUNT - 1])
def test_split_ranges_give_the_same_bytes(name, cut):
    cfg = GenerationConfig.from_dict(CONFIGS[name])
    whole = run_attempts(cfg, SEED, 0, COUNT)
    head, tail = run_attempts(cfg, SEED, 0, cut), run_attempts(cfg, SEED, cut, COUNT - cut)
    for field in whole.ARRAYS:
        joined = np.concatenate([getattr(head, field), getattr(tail, field)])
        assert joined.tobytes() == np.ascontiguousarray(getattr(whole, field)).tobytes(), field


def test_accepted_keeps_attempt_order_and_only_valid_rows():
    b = run_attempts(GenerationConfig.from_dict({}), SEED, 0, 5000)
    acc = b.accepted()
    assert acc.valid.all() and len(acc) == b.valid.sum()
    assert np.all(np.diff(acc.attempt_index) > 0)
    assert acc.tobytes() == b.take(b.valid).tobytes()


def test_seed_and_attempt_index_matter():
    cfg = GenerationConfig.from_dict({})
    a = run_attempts(cfg, SEED, 0, 1000)
    assert a.tobytes() != run_attempts(cfg, SEED + 1, 0, 1000).tobytes()
    shifted = run_attempts(cfg, SEED, 1, 1000)
    np.testing.assert_array_equal(a.tx_latitude[1:], shifted.tx_latitude[:-1])  # same attempts
    assert run_attempts(cfg, 0, 0, 10).tobytes() != run_attempts(cfg, 1, 0, 10).tobytes()


SCRIPT = """
import hashlib, sys
from heimdall_synth.kernel import GenerationConfig, run_attempts
cfg = GenerationConfig.from_dict({overrides!r})
b = run_attempts(cfg, {seed}, 0, {count}, threads={threads})
sys.stdout.write(hashlib.sha256(b.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("name", CONFIGS)
def test_another_process_gives_the_same_bytes(name):
    here = digest(run_attempts(GenerationConfig.from_dict(CONFIGS[name]), SEED, 0, COUNT))
    code = SCRIPT.format(overrides=CONFIGS[name], seed=SEED, count=COUNT, threads=1)
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=300).stdout
    assert there == here


@pytest.mark.parametrize("kw, field", [({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"),
                                       ({"seed": 1.0}, "seed"), ({"start": -5}, "start"),
                                       ({"count": True}, "count"), ({"threads": 0}, "threads"),
                                       ({"threads": 999}, "threads")])
def test_bad_call_arguments_name_the_field(kw, field):
    args = {"seed": 1, "start": 0, "count": 10, **kw}
    with pytest.raises(ConfigError) as err:
        run_attempts({}, **args)
    assert err.value.field == field


def test_zero_count_is_an_empty_batch():
    b = run_attempts({}, 1, 0, 0)
    assert len(b) == 0 and b.rx.shape == (0, 7, b.rx.shape[2])


def test_reused_output_buffer_gives_the_same_bytes():
    cfg = GenerationConfig.from_dict({"use_random_receivers": True})
    fresh = run_attempts(cfg, SEED, 500, 3000)
    buf = run_attempts(cfg, SEED + 1, 0, 4000)  # full of another seed's values
    again = run_attempts(cfg, SEED, 500, 3000, out=buf)
    assert again.tobytes() == fresh.tobytes()
    assert np.shares_memory(again.rx, buf.rx)
    with pytest.raises(ConfigError) as err:
        run_attempts(cfg, SEED, 0, 5000, out=buf)
    assert err.value.field == "out"
