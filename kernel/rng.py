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

Exponentials and normals use Marsaglia and Tsang's ziggurat: a table lookup and a multiply on
the common path, where Box-Muller needs a logarithm, a square root and a sine or cosine (those
were a third of the kernel's time).
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


def ziggurat_exponential_tables(layers: int = 256):
    """Marsaglia & Tsang's (2000) ziggurat for Exp(1), scaled for 53-bit integers.

    Returns (k, w, f, r): accept the integer u of layer i when u < k[i], giving u * w[i];
    f holds exp(-x) at the layer edges and r is where the tail starts.
    """
    scale = 2.0 ** 53
    de, ve = 7.697117470131487, 3.949659822581572e-3
    k, w, f = np.zeros(layers), np.zeros(layers), np.zeros(layers)
    q = ve / math.exp(-de)
    k[0], k[1] = math.floor(de / q * scale), 0.0
    w[0], w[layers - 1] = q / scale, de / scale
    f[0], f[layers - 1] = 1.0, math.exp(-de)
    te = de
    for i in range(layers - 2, 0, -1):
        de = -math.log(ve / de + math.exp(-de))
        k[i + 1] = math.floor(de / te * scale)
        te = de
        f[i] = math.exp(-de)
        w[i] = de / scale
    return k, w, f, 7.697117470131487


ZIG_K, ZIG_W, ZIG_F, ZIG_R = ziggurat_exponential_tables()
LAYER_MASK = np.uint64(255)
#: Ziggurat retries of the draw at sub s use subs s + RETRY * n (+ PHASE), and the normal's
#: tail s + RETRY * n + TAIL * m (+ PHASE); base subs stay below PHASE = 64, so no two meet.
PHASE, RETRY, TAIL = 64, 128, 1 << 20


@njit
def exponential_retry(skey, sub, bits):
    """The ziggurat's rare path (about 1 % of draws): wedges and the tail, with fresh draws
    keyed by the retry number, so the result is still a pure function of (key, sub)."""
    x = 0.0
    for n in range(1, 10_000):
        i = np.int64(bits & LAYER_MASK)
        u = np.float64(np.int64(bits >> S11))
        uni = uniform(skey, sub + RETRY * n)
        if i == 0:
            return ZIG_R - math.log(uni)
        x = u * ZIG_W[i]
        if ZIG_F[i] + uni * (ZIG_F[i - 1] - ZIG_F[i]) < math.exp(-x):
            return x
        bits = draw_bits(skey, sub + RETRY * n + PHASE)
        i = np.int64(bits & LAYER_MASK)
        u = np.float64(np.int64(bits >> S11))
        if u < ZIG_K[i]:
            return u * ZIG_W[i]
    return x


@njit(inline="always")
def exponential(skey, sub):
    """Exp(1) by the ziggurat: a table lookup and a multiply 99 % of the time (no logarithm)."""
    bits = draw_bits(skey, sub)
    i = np.int64(bits & LAYER_MASK)
    u = np.float64(np.int64(bits >> S11))
    if u < ZIG_K[i]:
        return u * ZIG_W[i]
    return exponential_retry(skey, sub, bits)


def ziggurat_normal_tables(layers: int = 128):
    """Marsaglia & Tsang's (2000) ziggurat for N(0, 1), scaled for signed 53-bit integers:
    accept v of layer i when |v| < k[i], giving v * w[i]."""
    scale = 2.0 ** 52
    dn, vn = 3.442619855899, 9.91256303526217e-3
    k, w, f = np.zeros(layers), np.zeros(layers), np.zeros(layers)
    q = vn / math.exp(-0.5 * dn * dn)
    k[0], k[1] = math.floor(dn / q * scale), 0.0
    w[0], w[layers - 1] = q / scale, dn / scale
    f[0], f[layers - 1] = 1.0, math.exp(-0.5 * dn * dn)
    tn = dn
    for i in range(layers - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(vn / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = math.floor(dn / tn * scale)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / scale
    return k, w, f, 3.442619855899


ZN_K, ZN_W, ZN_F, ZN_R = ziggurat_normal_tables()
NORMAL_LAYER_MASK = np.uint64(127)


@njit(inline="always")
def _signed53(bits):
    """The top 53 bits of a word as a signed integer in [-2^52, 2^52), as a float."""
    return np.float64(np.int64(bits) >> np.int64(11))


@njit
def normal_retry(skey, sub, bits):
    """The normal ziggurat's rare path (about 2.5 % of draws): wedges and the tail."""
    x = 0.0
    for n in range(1, 10_000):
        i = np.int64(bits & NORMAL_LAYER_MASK)
        v = _signed53(bits)
        x = v * ZN_W[i]
        if i == 0:  # the tail beyond ZN_R, by Marsaglia's exponential method
            for m in range(1, 10_000):
                tx = -math.log(uniform(skey, sub + RETRY * n + TAIL * m)) / ZN_R
                ty = -math.log(uniform(skey, sub + RETRY * n + TAIL * m + PHASE))
                if ty + ty >= tx * tx:
                    break
            return ZN_R + tx if v > 0 else -ZN_R - tx
        if ZN_F[i] + uniform(skey, sub + RETRY * n) * (ZN_F[i - 1] - ZN_F[i]) < math.exp(-0.5 * x * x):
            return x
        bits = draw_bits(skey, sub + RETRY * n + PHASE)
        i = np.int64(bits & NORMAL_LAYER_MASK)
        v = _signed53(bits)
        if abs(v) < ZN_K[i]:
            return v * ZN_W[i]
    return x


@njit(inline="always")
def normal(skey, sub):
    """N(0, 1) by the ziggurat: a table lookup and a multiply 97.5 % of the time."""
    bits = draw_bits(skey, sub)
    i = np.int64(bits & NORMAL_LAYER_MASK)
    v = _signed53(bits)
    if abs(v) < ZN_K[i]:
        return v * ZN_W[i]
    return normal_retry(skey, sub, bits)
