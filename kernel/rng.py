"""Counter-based random numbers: every draw is a pure function of (seed, attempt, draw number).

There is no generator state to share between threads, so any split of the attempts over threads,
batches, jobs or processes yields the same numbers (contract C4).

A draw number is the triple (stream, slot, sub) laid out in ``kernel.layout``:

  key(seed, attempt)        = mix64(mix64(seed ^ SEED_SALT) + attempt * GOLDEN)
  slot_key(key, stream, slot) = mix64(key ^ mix64((stream << 8 | slot) * GOLDEN + DRAW_SALT))
  bits(slot_key, sub)       = mix64(slot_key + (sub + 1) * GOLDEN)

so the keys of successive attempts, and the draws within one slot, are SplitMix64 streams.
``mix64`` is the SplitMix64 finaliser (Stafford's variant 13), a bijection on 64-bit words with
full avalanche. The two-level key costs one mix per draw where the sub is a constant.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SEED_SALT = np.uint64(0x5DEECE66D1F2A3B7)
DRAW_SALT = np.uint64(0x2545F4914F6CDD1D)
S11, S27, S30, S31, S32 = (np.uint64(s) for s in (11, 27, 30, 31, 32))
LOW32 = np.uint64(0xFFFFFFFF)
TWO_POW_M53 = 2.0 ** -53
TWO_POW_M32 = 2.0 ** -32
TWO_PI = 2.0 * math.pi


@njit(inline="always")
def mix64(z):
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@njit(inline="always")
def attempt_key(seed, attempt):
    """Key of one attempt; ``seed`` and ``attempt`` are uint64."""
    return mix64(mix64(seed ^ SEED_SALT) + attempt * GOLDEN)


@njit(inline="always")
def slot_key(key, stream, slot):
    return mix64(key ^ mix64(np.uint64((stream << 8) | slot) * GOLDEN + DRAW_SALT))


@njit(inline="always")
def draw_bits(skey, sub):
    return mix64(skey + np.uint64(sub + 1) * GOLDEN)


@njit(inline="always")
def uniform(skey, sub):
    """U(0, 1), open at both ends (53 bits)."""
    return (np.float64(np.int64(draw_bits(skey, sub) >> S11)) + 0.5) * TWO_POW_M53


@njit(inline="always")
def box_muller_r2(bits):
    """r^2 = -2 ln(u1) of a Box-Muller pair; u1 is the high 32 bits of the word."""
    return -2.0 * math.log((np.float64(np.int64(bits >> S32)) + 0.5) * TWO_POW_M32)


@njit(inline="always")
def box_muller_parts(bits):
    """(r^2, cos(theta)) of a Box-Muller pair from one 64-bit word (two 32-bit uniforms)."""
    u2 = np.float64(np.int64(bits & LOW32)) * TWO_POW_M32
    return box_muller_r2(bits), math.cos(TWO_PI * u2)


@njit(inline="always")
def box_muller_pair(bits):
    """(r^2, cos(theta), sin(theta)): r cos and r sin are two independent N(0, 1)."""
    t = TWO_PI * np.float64(np.int64(bits & LOW32)) * TWO_POW_M32
    return box_muller_r2(bits), math.cos(t), math.sin(t)


@njit(inline="always")
def normal(skey, sub):
    """N(0, 1) by Box-Muller (cosine branch) from one draw."""
    r2, c = box_muller_parts(draw_bits(skey, sub))
    return math.sqrt(r2) * c
