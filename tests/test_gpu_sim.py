"""The CUDA target in numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1, in a subprocess: the
setting must precede numba.cuda's import): the random numbers' CUDA twins draw exactly what the
CPU kernel functions draw, from the same source."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from heimdall_synth.kernel import gpu

SCRIPT = """
import json, sys
import numpy as np
from heimdall_synth.kernel import gpu
assert gpu.simulated()
out = {}
for seed, start, stream, slot, sub in json.loads(sys.argv[1]):
    a = gpu.draws_gpu(seed, start, 300, stream, slot, sub)
    b = gpu.draws_cpu(seed, start, 300, stream, slot, sub)
    out[f"{seed}/{start}/{stream}/{slot}/{sub}"] = {
        k: [bool(np.array_equal(a[k], b[k])), int(np.count_nonzero(a[k]))] for k in a}
twins = gpu.rng_twins()
out["same_code"] = all(getattr(twins, f.py_func.__name__).py_func.__code__ is f.py_func.__code__
                       for f in gpu.RNG_FUNCTIONS)
print(json.dumps(out))
"""

CASES = [(7, 0, 3, 1, 0), (2**63 - 1, 10**12, 0, 0, 5), (123456789, 99, 9, 255, 63)]


def test_random_draws_on_the_cuda_target_equal_the_cpus():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    res = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out.pop("same_code") is True  # one source: the twins run the CPU functions' code
    assert len(out) == len(CASES)
    for case, draws in out.items():
        for name, (equal, nonzero) in draws.items():
            assert equal, (case, name)  # integer draws identical; in the simulator floats too
            assert nonzero > 250, (case, name)  # real draws, not an unwritten array


def test_the_cpu_path_needs_no_cuda():
    assert not gpu.simulated() or os.environ.get("NUMBA_ENABLE_CUDASIM")
    draws = gpu.draws_cpu(7, 0, 5, 3, 1, 0)
    assert draws["bits"].dtype == "uint64" and len(set(draws["bits"].tolist())) == 5
