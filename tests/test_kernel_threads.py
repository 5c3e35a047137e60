"""Parallel kernels launched from several threads at once (two jobs of one service).

Numba's fallback threading layer, ``workqueue`` (an install without libgomp or TBB), aborts the
whole process when a second thread launches a parallel kernel while one runs. The kernel's
launches go through ``kernel.jit.parallel_launch``, which serializes them unless the layer in
use is thread-safe; these tests force each layer in a fresh process and launch from two threads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, threading, hashlib
import numba
from heimdall_synth.kernel import GenerationConfig, run_attempts

cfg = GenerationConfig()
expected = run_attempts(cfg, 7, 0, 20_000).scalars.tobytes()
errors, digests = [], []

def work():
    try:
        for _ in range(15):
            digests.append(run_attempts(cfg, 7, 0, 20_000).scalars.tobytes() == expected)
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=work) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(numba.threading_layer(), len(digests), all(digests), errors)
sys.exit(0 if not errors and len(digests) == 45 and all(digests) else 1)
"""


@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_parallel_kernels_from_several_threads(layer):
    """Three threads launch the parallel kernel 15 times each: the process survives, and every
    result equals the one-thread result. Under workqueue, without the serialization, Numba
    prints "Concurrent access has been detected" and aborts (SIGABRT)."""
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert proc.stdout.split()[0] == layer, proc.stdout
