"""A discrete Fourier transform of any length written as plain Numba functions, so that the same
source also compiles as CUDA device functions (``gpu.device_twins``), where NumPy's allocation
and ``np.fft`` do not exist.

Semantics are numpy's: ``fft_forward`` computes X[k] = sum_t x[t] exp(-2 pi i k t / n) and
``fft_inverse`` computes numpy.fft.ifft (with its 1 / n).

Algorithm
    * Lengths whose prime factors are all <= BLUESTEIN_ABOVE (31): a mixed-radix Stockham
      autosort FFT, decimation in time, over the prime factorisation of n. Each stage reads one
      buffer and writes the other in natural order (the "autosort": no bit reversal),
      ping-ponging between the two halves of ``work`` (x is copied in and X out, so the stages
      see one array type whatever x and out are: fewer Numba compilations). Radix 2, 3, 4
      (pairs of 2s) and 5 have their own butterflies; any other prime p has a generic butterfly
      that pairs the conjugate roots (about 3p real flops per point: why p is capped). The
      generic radices run first, where they need no twiddles and their loops are longest, and
      radix 4 last (measured fastest).
    * Lengths with a prime factor > 31: Bluestein's chirp-z algorithm. With the chirp
      c_t = exp(-i pi t^2 / n), X[k] = c_k sum_t (x_t c_t) conj(c_(k-t)): a convolution, done
      as two Stockham transforms of the smallest 5-smooth length M >= 2n - 1 (a forward one,
      and an inverse one through conjugation) around a product with the precomputed transform
      of the filter conj(c).
    * The inverse is the forward transform conjugated on the way in and out, then / n: one set
      of butterflies.

The threshold, measured on the CPU (direct radix-p stage against Bluestein, n = p * cofactor):
up to p = 31 the direct transform wins at every length past a few hundred points (p = 31:
21 against 31 us at n = 16 p, 0.29 against 0.52 ms at n = 320 p); the cross-over moves with
the cofactor, from p ~ 40 (n = 16 p) to p ~ 61 (n = 320 p), and above ~100 Bluestein wins
everywhere (p = 101, n = 320 p: 1.9 against 2.7 ms). For a bare prime n <= 31 Bluestein would
be faster, by less than a microsecond.

Why the tables come from the host: every twiddle factor, the radix constants, the chirp and the
filter's transform are computed once by ``fft_plans`` in NumPy. Each root of unity's angle is
reduced exactly, in integers, to the first octant and its cos and sin taken in long double
where the platform has one: the roots measured within 0.5 ulp (correctly rounded) against
mpmath. The device functions only read those tables - no sin, cos or sqrt - so the accuracy does
not depend on the device's maths library and is the same on both targets.

The device-side functions allocate nothing, do not recurse and raise nothing: a length without
a plan, an ``out`` of another length or a ``work`` too small gives NaN in ``out``.

Accuracy measured (max |error| / max |X| against numpy.fft, random complex data, x86-64):
at most 5e-16 for the Stockham lengths of tests/test_fft.py (1 .. 10400) and at most 1.1e-15
for the Bluestein ones (37 .. 20014). Speed (one CPU core, forward): 10,200 points 0.21 ms
against 0.07 ms for np.fft.fft inside njit (rocket-fft: pocketfft); 10,000 points 0.12 against
0.045 ms; 10,007 (Bluestein) 0.53 against 0.22 ms; 2048 points 16 against 7.5 microseconds.
"""

from __future__ import annotations

import numpy as np

from .jit import njit

#: Lengths with a prime factor above this use Bluestein's algorithm (measured: module docstring).
BLUESTEIN_ABOVE = 31

#: The most factors one length can have (3^40 > 2^63: any int64 length fits).
MAX_FACTORS = 40

# The columns of a plan (one row of plans_i).
P_N = 0          # the transform's length n
P_METHOD = 1     # METHOD_STOCKHAM or METHOD_BLUESTEIN
P_M = 2          # the length of the Stockham transform run (n, or Bluestein's M)
P_ROOTS = 3      # offset in plans_t of exp(-2 pi i j / m), j = 0 .. m - 1
P_CHIRP = 4      # Bluestein: offset of c_t = exp(-i pi t^2 / n), t = 0 .. n - 1 (else -1)
P_FILTER = 5     # Bluestein: offset of FFT_M(conj c, wrapped) / M, M entries (else -1)
P_WORK = 6       # complex128 elements of work this plan needs
P_NFACTORS = 7   # number of radices of m
P_FACTORS = 8    # the radices of m, in stage order
PLAN_WIDTH = P_FACTORS + MAX_FACTORS

METHOD_STOCKHAM = 0
METHOD_BLUESTEIN = 1

NAN = float("nan")  # a global constant: Numba freezes it on both targets


# ----------------------------------------------------------------------------- host: plans

def _factors(n: int) -> list[int]:
    """The radices of n in stage order: primes above 5 (largest first), 5s, 3s, a 2, 4s."""
    primes, m, p = [], n, 2
    while p * p <= m:
        while m % p == 0:
            primes.append(p)
            m //= p
        p += 1
    if m > 1:
        primes.append(m)
    twos = primes.count(2)
    return sorted(p for p in primes if p > 5)[::-1] + [5] * primes.count(5) + \
        [3] * primes.count(3) + [2] * (twos % 2) + [4] * (twos // 2)


def _smooth_at_least(k: int) -> int:
    """The smallest 2^a 3^b 5^c >= k (Bluestein's M: smaller than the next power of two, and
    3 and 5 have their own butterflies)."""
    best, p5 = None, 1
    while p5 < 2 * k:
        p35 = p5
        while p35 < 2 * k:
            m = p35
            while m < k:
                m *= 2
            best = m if best is None else min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _unit_roots(j: np.ndarray, m: int) -> np.ndarray:
    """exp(-2 pi i j / m) for integers 0 <= j < m: the angle is split exactly, in integers, into
    a quarter turn q and a remainder in the first octant, whose cos and sin are taken in long
    double where that is wider than float64 (x86-64: within 0.5 ulp, measured against mpmath;
    about an ulp in float64), and the quarter turns are applied by exact swaps and signs."""
    j = np.asarray(j, np.int64)
    q, rem = np.divmod(4 * j, m)             # 2 pi j / m = (pi / 2) (q + rem / m)
    flip = 2 * rem > m                       # beyond pi / 4: use the complement pi / 2 - phi
    rr = np.where(flip, m - rem, rem)
    wide = np.longdouble if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps else np.float64
    phi = wide("1.57079632679489661923132169163975144") * rr.astype(wide) / wide(m)  # <= pi/4
    c, s = np.cos(phi).astype(np.float64), np.sin(phi).astype(np.float64)
    cb, sb = np.where(flip, s, c), np.where(flip, c, s)   # cos and sin of (pi / 2) rem / m
    re = np.select([q == 0, q == 1, q == 2], [cb, -sb, -cb], sb)
    im = np.select([q == 0, q == 1, q == 2], [sb, cb, -sb], -cb)
    return re - 1j * im                      # the conjugate: the forward transform's sign


def fft_plans(lengths) -> tuple[np.ndarray, np.ndarray]:
    """Plans for every distinct length in ``lengths`` (ints >= 1), packed in two arrays:
    ``plans_i`` int64 (one row per length, columns P_*) and ``plans_t`` complex128 (every plan's
    tables, concatenated; plans of one Stockham length share its roots of unity)."""
    distinct = []
    for n in lengths:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"FFT lengths are integers >= 1, not {n!r}")
        if int(n) not in distinct:
            distinct.append(int(n))
    rows, tables, size, roots_at = [], [], 0, {}

    def add(table):
        nonlocal size
        tables.append(np.asarray(table, np.complex128))
        size += len(table)
        return size - len(table)

    def roots(m):
        if m not in roots_at:
            roots_at[m] = add(_unit_roots(np.arange(m), m))
        return roots_at[m]

    for n in distinct:
        row = np.full(PLAN_WIDTH, -1, np.int64)
        row[P_N] = n
        if max(_factors(n), default=1) <= BLUESTEIN_ABOVE:
            m = n
            row[P_METHOD] = METHOD_STOCKHAM
        else:
            if n >= 3_000_000_000:  # t * t below stays within int64
                raise ValueError(f"FFT length {n} is too long for Bluestein's tables")
            m = _smooth_at_least(2 * n - 1)
            t = np.arange(n, dtype=np.int64)
            chirp = _unit_roots(t * t % (2 * n), 2 * n)   # exp(-i pi t^2 / n), exact reduction
            h = np.zeros(m, np.complex128)                # the filter conj(c), wrapped around
            h[:n] = np.conj(chirp)
            h[m - n + 1:] = np.conj(chirp[1:])[::-1]
            row[P_METHOD] = METHOD_BLUESTEIN
            row[P_CHIRP] = add(chirp)
            row[P_FILTER] = add(np.fft.fft(h) / m)       # 1 / M of the inverse folded in
        factors = _factors(m)
        row[P_M], row[P_ROOTS], row[P_NFACTORS] = m, roots(m), len(factors)
        row[P_WORK] = 2 * m                               # the two Stockham buffers
        row[P_FACTORS:P_FACTORS + len(factors)] = factors
        rows.append(row)
    plans_i = np.array(rows, np.int64).reshape(len(rows), PLAN_WIDTH)
    plans_t = np.concatenate(tables) if tables else np.zeros(0, np.complex128)
    return plans_i, plans_t


def work_size(plans_i) -> int:
    """complex128 elements of ``work`` that fft_forward / fft_inverse need for the largest plan."""
    return int(plans_i[:, P_WORK].max()) if len(plans_i) else 0


# ----------------------------------------------------------------------------- device: stages
# A stage of radix p turns the length-Ls DFTs of the subsequences of stride p*r into length
# L = Ls*p DFTs of the subsequences of stride r (m = L*r). Element (j, k) of a stage's data -
# frequency j of subsequence k - sits at j*r + k, so the first stage reads x in order and the
# last (r = 1) writes X in order. For j = j' + Ls*d:
#     dst[j*r + k] = sum_c w_L^(j c) src[j'*p*r + c*r + k],  w_L^(j' c) = tw[j' c r],
# tw being the table exp(-2 pi i j / m), j = 0 .. m - 1 (so w_p^c = tw[c Ls r]).
# The stages take the buffers as views starting at 0: with offsets passed in as arguments the
# CPU code measured 10 - 30 % slower.

# Numba multiplies a float by a complex as two complexes (c + 0i) (a + bi): four products, and
# LLVM may not drop the zero terms (IEEE: 0 * inf is NaN). These two say what is meant.

@njit
def fft_rmul(c, z):
    """c z for a real c."""
    return complex(c * z.real, c * z.imag)


@njit
def fft_imul(s, z):
    """i s z for a real s."""
    return complex(-s * z.imag, s * z.real)


@njit
def fft_radix2(src, dst, Ls, r, tw):
    step = Ls * r
    for jp in range(Ls):
        w1 = tw[jp * r]
        i, o = jp * 2 * r, jp * r
        for k in range(r):
            a0 = src[i + k]
            a1 = src[i + r + k] * w1
            dst[o + k] = a0 + a1
            dst[o + step + k] = a0 - a1


@njit
def fft_radix3(src, dst, Ls, r, tw):
    step = Ls * r
    w = tw[step]                                       # exp(-2 pi i / 3)
    c, s = w.real, w.imag
    for jp in range(Ls):
        w1, w2 = tw[jp * r], tw[2 * jp * r]
        i, o = jp * 3 * r, jp * r
        for k in range(r):
            a0 = src[i + k]
            a1 = src[i + r + k] * w1
            a2 = src[i + 2 * r + k] * w2
            t, u = a1 + a2, a1 - a2
            b, isu = a0 + fft_rmul(c, t), fft_imul(s, u)
            dst[o + k] = a0 + t
            dst[o + step + k] = b + isu
            dst[o + 2 * step + k] = b - isu


@njit
def fft_radix4(src, dst, Ls, r, tw):
    step = Ls * r
    for jp in range(Ls):
        w1, w2, w3 = tw[jp * r], tw[2 * jp * r], tw[3 * jp * r]
        i, o = jp * 4 * r, jp * r
        for k in range(r):
            a0 = src[i + k]
            a1 = src[i + r + k] * w1
            a2 = src[i + 2 * r + k] * w2
            a3 = src[i + 3 * r + k] * w3
            e0, e1, f0, u = a0 + a2, a0 - a2, a1 + a3, a1 - a3
            f1 = complex(u.imag, -u.real)                   # -i (a1 - a3): exact
            dst[o + k] = e0 + f0
            dst[o + step + k] = e1 + f1
            dst[o + 2 * step + k] = e0 - f0
            dst[o + 3 * step + k] = e1 - f1


@njit
def fft_radix5(src, dst, Ls, r, tw):
    step = Ls * r
    wa, wb = tw[step], tw[2 * step]                    # exp(-2 pi i / 5), its square
    c1, s1, c2, s2 = wa.real, wa.imag, wb.real, wb.imag
    for jp in range(Ls):
        w1, w2 = tw[jp * r], tw[2 * jp * r]
        w3, w4 = tw[3 * jp * r], tw[4 * jp * r]
        i, o = jp * 5 * r, jp * r
        for k in range(r):
            a0 = src[i + k]
            a1 = src[i + r + k] * w1
            a2 = src[i + 2 * r + k] * w2
            a3 = src[i + 3 * r + k] * w3
            a4 = src[i + 4 * r + k] * w4
            t1, t2, u1, u2 = a1 + a4, a2 + a3, a1 - a4, a2 - a3
            b1 = a0 + fft_rmul(c1, t1) + fft_rmul(c2, t2)
            b2 = a0 + fft_rmul(c2, t1) + fft_rmul(c1, t2)
            iv1 = fft_imul(s1, u1) + fft_imul(s2, u2)
            iv2 = fft_imul(s2, u1) - fft_imul(s1, u2)
            dst[o + k] = a0 + t1 + t2
            dst[o + step + k] = b1 + iv1
            dst[o + 2 * step + k] = b2 + iv2
            dst[o + 3 * step + k] = b2 - iv2
            dst[o + 4 * step + k] = b1 - iv1


@njit
def fft_radix_any(src, dst, p, Ls, r, tw):
    """An odd radix p (the plans give it the primes 7 .. BLUESTEIN_ABOVE). The stage overwrites
    its input (the next stage writes there anyway), so the twiddles are applied to src in place
    and the p-point DFT then pairs the terms c and p - c, whose roots are conjugate: per pair of
    outputs d and p - d, a0 + sum_c cos (a_c + a_(p-c)) +- i sin (a_c - a_(p-c)), about a
    third of the arithmetic of p full complex products per output, with no scratch."""
    step = Ls * r
    for jp in range(Ls):
        i, o = jp * p * r, jp * r
        if jp > 0:
            for c in range(1, p):
                w = tw[jp * c * r]
                for k in range(r):
                    src[i + c * r + k] *= w
        for k in range(r):
            dst[o + k] = src[i + k]
        for c in range(1, p):
            for k in range(r):
                dst[o + k] += src[i + c * r + k]
        for d in range(1, (p - 1) // 2 + 1):
            od, oe = o + d * step, o + (p - d) * step
            for k in range(r):
                dst[od + k] = src[i + k]
                dst[oe + k] = src[i + k]
            idx = 0                           # d c mod p, kept below p by one subtraction
            for c in range(1, (p - 1) // 2 + 1):
                idx += d
                if idx >= p:
                    idx -= p
                w = tw[idx * step]            # w_p^(d c)
                co, si = w.real, w.imag
                for k in range(r):
                    a, b = src[i + c * r + k], src[i + (p - c) * r + k]
                    sa, isu = fft_rmul(co, a + b), fft_imul(si, a - b)
                    dst[od + k] += sa + isu
                    dst[oe + k] += sa - isu


@njit
def fft_stockham(a, b, row, plans_i, tw):
    """The forward Stockham transform of length m = plans_i[row, P_M] of a, with b (of length
    m too) the other buffer and tw the plan's roots of unity: stage 0 reads a, stage 1 reads
    b, ... so the result is in a when the number of stages is even, else in b (callers place
    the input by that parity). Both buffers' contents are consumed."""
    m = plans_i[row, P_M]
    Ls = 1
    for s in range(plans_i[row, P_NFACTORS]):
        p = plans_i[row, P_FACTORS + s]
        src, dst = (a, b) if s % 2 == 0 else (b, a)
        r = m // (Ls * p)
        if p == 4:
            fft_radix4(src, dst, Ls, r, tw)
        elif p == 2:
            fft_radix2(src, dst, Ls, r, tw)
        elif p == 3:
            fft_radix3(src, dst, Ls, r, tw)
        elif p == 5:
            fft_radix5(src, dst, Ls, r, tw)
        else:
            fft_radix_any(src, dst, p, Ls, r, tw)
        Ls *= p


# ----------------------------------------------------------------------------- device: API

@njit
def fft_run(x, out, plans_i, plans_t, work, inverse):
    """Both transforms. Work's first m elements (A) and next m (B) are the Stockham buffers, the
    input placed so that each transform ends in A. Stockham plans: A = FFT(x), X = A. Bluestein
    plans (chirp c, filter transform H / M): A = FFT(x c, zero-padded to M), then
    A = FFT(conj(A H / M)), which is M conj(IFFT(A H / M)) = conj(the convolution), and
    X = c conj(A). The inverse conjugates x on the way in and X on the way out, and scales by
    1 / n.

    No plan of length n, an out of another length or a work too small: NaN in out (a device
    function cannot raise)."""
    n = x.shape[0]
    row = -1
    for i in range(plans_i.shape[0]):
        if plans_i[i, P_N] == n:
            row = i
            break
    if row < 0 or out.shape[0] != n or work.shape[0] < plans_i[row, P_WORK]:
        for k in range(out.shape[0]):
            out[k] = complex(NAN, NAN)
        return
    m, t0 = plans_i[row, P_M], plans_i[row, P_ROOTS]
    tw = plans_t[t0:t0 + m]                            # views: no allocation
    A = work[0:m]
    first, second = (A, work[m:2 * m]) if plans_i[row, P_NFACTORS] % 2 == 0 else (work[m:2 * m], A)
    sign = -1.0 if inverse else 1.0                    # conjugation for the inverse
    if plans_i[row, P_METHOD] == METHOD_BLUESTEIN:
        ch, hf = plans_i[row, P_CHIRP], plans_i[row, P_FILTER]
        chirp, filt = plans_t[ch:ch + n], plans_t[hf:hf + m]
        for t in range(n):
            v = x[t]
            first[t] = complex(v.real, sign * v.imag) * chirp[t]
        for t in range(n, m):
            first[t] = 0j
        fft_stockham(first, second, row, plans_i, tw)
        for t in range(m):
            v = A[t] * filt[t]
            first[t] = complex(v.real, -v.imag)
        fft_stockham(first, second, row, plans_i, tw)
        for k in range(n):
            v = A[k]
            A[k] = chirp[k] * complex(v.real, -v.imag)
    else:
        for t in range(n):
            v = x[t]
            first[t] = complex(v.real, sign * v.imag)
        fft_stockham(first, second, row, plans_i, tw)
    scale = 1.0 / n if inverse else 1.0
    for k in range(n):
        v = A[k]
        out[k] = complex(scale * v.real, sign * scale * v.imag)


@njit
def fft_forward(x, out, plans_i, plans_t, work):
    """out[:n] = DFT of x (n = x.shape[0] = out.shape[0]), as numpy.fft.fft; x is not modified,
    out is distinct from x, work holds at least work_size(plans_i) elements. No plan of length
    n (or a work too small): NaN in out."""
    fft_run(x, out, plans_i, plans_t, work, False)


@njit
def fft_inverse(x, out, plans_i, plans_t, work):
    """The same for numpy.fft.ifft (scaled by 1 / n)."""
    fft_run(x, out, plans_i, plans_t, work, True)
