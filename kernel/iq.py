"""Signals of iq_raw samples (model version 2): what each receiver of a valid sample records.

The job's producer calls ``synthesize`` for the samples it accepts; readers call it again for
a sample whose IQ is not stored (docs/SIGNALS.md).

A sample's IQ is a pure function of (seed, attempt, receiver) and the attempt's link budget
(``kernel.attempt``): every draw below is keyed like the budget's, so the same sample gives the
same bytes whatever the threads, batches or processes.

1. **Content** (the same audio at every receiver; ``audio``): 90 % voice-like (three formants
   F1 500-800, F2 1000-2000, F3 2500-3000 Hz at amplitudes 0.6 / 0.3 / 0.1, syllables of
   100-250 ms with 10 ms ramps separated by pauses of 20-130 ms, about 30 % of the time, and FM
   pre-emphasis of 75 us), 5 % a tone of 800-1200 Hz, 5 % a DTMF pair.
2. **Transmission** (``transmitted``): narrow-band FM, peak deviation 0.2 x the channel
   bandwidth (2.5 kHz at 12.5 kHz, 5 kHz at 25 kHz), over the capture and a lead-in long
   enough for the longest delay, so every receiver's capture (all start at the same absolute
   time) holds what was transmitted d / c earlier.
3. **Each receiver** (``receive``): its propagation delay d / c and 2-3 echoes (excess delay
   U(0.5, 5) us, U(-25, -10) dB, random phase) applied exactly in the frequency domain; the
   result scaled to unit mean power (the link budget owns the power, the echoes shape the
   channel); the carrier offset (transmitter's + receiver's, as in the budget); in each of the
   budget's measurement windows the budget's window power and a random phase; complex white
   Gaussian noise of the noise floor given in the channel bandwidth, that is
   noise_floor_dbm + 10 log10(sample_rate / bandwidth) over the sample rate.

Units: IQ amplitude in sqrt(mW), so the mean of |x|^2 over a window is its power in mW.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .attempt import window_powers
from .dft import dft, idft, no_plans
from .jit import njit
from .layout import R_DIST, R_FADING, R_FOFF, R_LOS, R_RSSI, STREAM_LINK
from .rng import GOLDEN, attempt_key, mix64, normal, slot_key, uniform

SPEED_OF_LIGHT_M_S = 299_792_458.0
STREAM_IQ = 3  # slot 0: content, 1: syllables, 2 + j: receiver j's channel
STREAM_NOISE = 4  # slot j: receiver j's noise, one pair of uniforms per IQ sample
C_KIND, C_TONE, C_DTMF_LOW, C_DTMF_HIGH, C_F1, C_F2, C_F3, C_P1, C_P2, C_P3, C_START = range(11)
H_ECHOES, H_DELAY0, H_POWER0, H_PHASE0 = 0, 1, 4, 7  # receiver slot subs (3 echoes at most)
H_WINDOW_PHASE0 = 16  # + window
KIND_VOICE, KIND_TONE, KIND_DTMF = 0, 1, 2
DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
PRE_EMPHASIS_S = 75e-6
DEVIATION_PER_BANDWIDTH = 0.2
#: The lead-in before the capture: longer than any propagation delay plus echo (1,000 km).
LEAD_IN_S = 0.004


@njit
def audio_kind(key):
    u = uniform(slot_key(key, STREAM_IQ, 0), C_KIND)
    return KIND_VOICE if u < 0.9 else KIND_TONE if u < 0.95 else KIND_DTMF


@njit
def audio(key, fs, t0, out):
    """The sample's audio (peak 1) at times t0 + n / fs into out[n]."""
    ck = slot_key(key, STREAM_IQ, 0)
    kind = audio_kind(key)
    n = out.shape[0]
    two_pi = 2.0 * math.pi
    if kind == KIND_TONE:
        f = 800.0 + 400.0 * uniform(ck, C_TONE)
        for i in range(n):
            out[i] = math.sin(two_pi * f * (t0 + i / fs))
        return kind
    if kind == KIND_DTMF:
        lo = DTMF_LOW[min(int(4.0 * uniform(ck, C_DTMF_LOW)), 3)]
        hi = DTMF_HIGH[min(int(4.0 * uniform(ck, C_DTMF_HIGH)), 3)]
        for i in range(n):
            t = t0 + i / fs
            out[i] = 0.5 * (math.sin(two_pi * lo * t) + math.sin(two_pi * hi * t))
        return kind
    f1 = 500.0 + 300.0 * uniform(ck, C_F1)
    f2 = 1000.0 + 1000.0 * uniform(ck, C_F2)
    f3 = 2500.0 + 500.0 * uniform(ck, C_F3)
    p1, p2, p3 = (two_pi * uniform(ck, C_P1), two_pi * uniform(ck, C_P2),
                  two_pi * uniform(ck, C_P3))
    # Syllables and pauses from a start somewhere before t0, so t0 falls anywhere in them.
    sk = slot_key(key, STREAM_IQ, 1)
    start = t0 - 0.4 * uniform(ck, C_START)
    k = 0
    ramp = 0.01
    a = b = 0.0  # the current syllable [a, b)
    next_at = start
    previous = 0.0
    for i in range(n):
        t = t0 + i / fs
        while t >= next_at:  # the next syllable: U(100, 250) ms after a pause of U(20, 130) ms
            a = next_at + 0.02 + 0.11 * uniform(sk, 2 * k)
            b = a + 0.10 + 0.15 * uniform(sk, 2 * k + 1)
            next_at = b
            k += 1
        env = 0.0
        if a <= t < b:
            env = min(1.0, (t - a) / ramp, (b - t) / ramp)
        x = env * (0.6 * math.sin(two_pi * f1 * t + p1) + 0.3 * math.sin(two_pi * f2 * t + p2)
                   + 0.1 * math.sin(two_pi * f3 * t + p3))
        # FM pre-emphasis, first order: y = x + tau dx/dt.
        out[i] = x + PRE_EMPHASIS_S * fs * (x - previous)
        previous = x
    peak = 0.0
    for i in range(n):
        peak = max(peak, abs(out[i]))
    if peak > 0.0:
        for i in range(n):
            out[i] /= peak
    return kind


@njit
def transmitted(key, fs, capture, bandwidth_hz, lead_in):
    """The transmitted complex baseband, unit amplitude, over the lead-in and the capture:
    FM of the sample's audio with peak deviation DEVIATION_PER_BANDWIDTH x bandwidth."""
    n = lead_in + capture
    s = np.empty(n, np.complex128)
    transmitted_into(key, fs, bandwidth_hz, lead_in, np.empty(n), s)
    return s


@njit
def transmitted_into(key, fs, bandwidth_hz, lead_in, m, s):
    """``transmitted`` into s (its length: lead-in and capture), m the audio's scratch."""
    n = s.shape[0]
    audio(key, fs, -lead_in / fs, m[:n])
    deviation = DEVIATION_PER_BANDWIDTH * bandwidth_hz
    phase = 0.0
    step = 2.0 * math.pi * deviation / fs
    for i in range(n):
        phase += step * m[i]
        s[i] = complex(math.cos(phase), math.sin(phase))


#: Phasor runs are re-anchored exactly this often (the recurrence drifts by about 1e-16 per
#: step in between).
ANCHOR = 64


@njit(inline="always")
def phasor(phase):
    return complex(math.cos(phase), math.sin(phase))


@njit
def phasor_run(step, out):
    """out[k] = exp(j k step): a complex multiply per element, recomputed exactly every
    ANCHOR elements."""
    z = complex(1.0, 0.0)
    rot = phasor(step)
    for k in range(out.shape[0]):
        if k % ANCHOR == 0:
            z = phasor(k * step)
        out[k] = z
        z *= rot


@njit
def delay_phasors(fs, delay_s, out):
    """e^(-j 2 pi f delay) at the FFT bins f = k fs / n, the upper half read as negative
    (f = (k - n) fs / n: the lower half's run times e^(j 2 pi fs delay))."""
    n = out.shape[0]
    phasor_run(-2.0 * math.pi * fs / n * delay_s, out)
    wrap = phasor(2.0 * math.pi * fs * delay_s)
    for k in range((n + 1) // 2, n):
        out[k] *= wrap


@njit
def channel_response(key, j, fs, n, delay_s):
    """Receiver j's channel at the n FFT bins: its delay and its 2-3 echoes,
    H(f) = e^(-j 2 pi f d) (1 + sum_e g_e e^(-j 2 pi f d_e))."""
    h = np.empty(n, np.complex128)
    channel_response_into(key, j, fs, delay_s, h, np.empty(n, np.complex128))
    return h


@njit
def channel_response_into(key, j, fs, delay_s, h, run):
    """``channel_response`` into h (n bins), run a scratch of n."""
    n = h.shape[0]
    hk = slot_key(key, STREAM_IQ, 2 + j)
    echoes = 2 if uniform(hk, H_ECHOES) < 0.5 else 3
    for k in range(n):
        h[k] = 1.0
    for e in range(echoes):
        delay = (0.5 + 4.5 * uniform(hk, H_DELAY0 + e)) * 1e-6
        amplitude = 10.0 ** ((-25.0 + 15.0 * uniform(hk, H_POWER0 + e)) / 20.0)
        gain = amplitude * phasor(2.0 * math.pi * uniform(hk, H_PHASE0 + e))
        delay_phasors(fs, delay, run)
        for k in range(n):
            h[k] += gain * run[k]
    delay_phasors(fs, delay_s, run)
    for k in range(n):
        h[k] *= run[k]


NOISE_BLOCK = 32  # IQ samples per noise key: two normals each, subs 0..63


@njit(inline="always")
def noise_pair(nk, i):
    """Receiver noise at IQ sample i: two standard normals from the ziggurat (kernel.rng),
    keyed by the block of NOISE_BLOCK samples and the sample's place in it."""
    block_key = mix64(nk + np.uint64(i // NOISE_BLOCK + 1) * GOLDEN)
    sub = 2 * (i % NOISE_BLOCK)
    return normal(block_key, sub), normal(block_key, sub + 1)


@njit
def receive(key, j, spectrum, fs, capture, lead_in, delay_s, offset_hz, window_dbm, noise_dbm,
            bandwidth_hz, out):
    """Receiver j's capture of the transmitted signal whose FFT is ``spectrum``: into out[:]
    (complex64, ``capture`` samples). window_dbm[w]: the received power of each measurement
    window (the link budget's); noise_dbm: the noise floor in the channel bandwidth."""
    n = spectrum.shape[0]
    scratch = np.empty((RECEIVE_ROWS, n), np.complex128)
    plans_i, plans_t, work = no_plans()
    receive_into(key, j, spectrum, fs, capture, lead_in, delay_s, offset_hz, window_dbm,
                 noise_dbm, bandwidth_hz, out, scratch, plans_i, plans_t, work)


#: receive_into's complex scratch rows (each as long as the spectrum).
W_CHANNEL, W_RUN, W_RECEIVED, W_CARRIER = range(4)
RECEIVE_ROWS = 4


@njit
def receive_into(key, j, spectrum, fs, capture, lead_in, delay_s, offset_hz, window_dbm,
                 noise_dbm, bandwidth_hz, out, scratch, plans_i, plans_t, work):
    """``receive`` with its scratch given: complex (RECEIVE_ROWS, spectrum's length), and the
    transform's plans and work (``kernel.dft``)."""
    n = spectrum.shape[0]
    h = scratch[W_CHANNEL]
    channel_response_into(key, j, fs, delay_s, h, scratch[W_RUN])
    for k in range(n):
        h[k] = spectrum[k] * h[k]
    y = scratch[W_RECEIVED]
    idft(h, y, plans_i, plans_t, work)
    power = 0.0
    for i in range(capture):
        v = y[lead_in + i]
        power += v.real * v.real + v.imag * v.imag
    norm = 1.0 / math.sqrt(power / capture) if power > 0.0 else 0.0
    hk = slot_key(key, STREAM_IQ, 2 + j)
    nk = slot_key(key, STREAM_NOISE, j)
    windows = window_dbm.shape[0]
    per_window = capture // windows
    sigma = math.sqrt(10.0 ** ((noise_dbm + 10.0 * math.log10(fs / bandwidth_hz)) / 10.0) / 2.0)
    two_pi = 2.0 * math.pi
    carrier = scratch[W_CARRIER, :capture]
    phasor_run(two_pi * offset_hz / fs, carrier)
    for w in range(windows):
        first = w * per_window
        last = capture if w == windows - 1 else first + per_window
        amplitude = math.sqrt(10.0 ** (window_dbm[w] / 10.0)) * norm
        gain = amplitude * phasor(two_pi * uniform(hk, H_WINDOW_PHASE0 + w))
        for i in range(first, last):
            g1, g2 = noise_pair(nk, i)
            v = y[lead_in + i] * gain * carrier[i]
            out[i] = np.complex64(complex(v.real + sigma * g1, v.imag + sigma * g2))


@njit
def window_dbm(key, j, rx_row, chunks, fading_on, out):
    """The link budget's received power in each measurement window of receiver j (dBm):
    its mean rssi less its fading, plus each window's fading, drawn exactly as the budget
    drew them (``attempt.window_powers``)."""
    lk = slot_key(key, STREAM_LINK, j)
    fading = window_powers(lk, rx_row[R_LOS] > 0.5, chunks, fading_on, out)
    base = rx_row[R_RSSI] - rx_row[R_FADING]
    for w in range(chunks):
        out[w] = base + out[w]
    return fading


def lead_in_samples(fs: float) -> int:
    """IQ samples of the lead-in before the capture at sample rate fs."""
    return int(math.ceil(LEAD_IN_S * fs))


#: synthesize_core's complex scratch rows (each as long as lead-in and capture).
W_SIGNAL, W_SPECTRUM = RECEIVE_ROWS, RECEIVE_ROWS + 1
SYNTHESIS_ROWS = RECEIVE_ROWS + 2


@njit
def synthesize_sample(seed, attempt, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                      noise_dbm, out):
    """Every receiver's IQ of one accepted sample into out[:n_rx] (complex64, receivers x
    capture samples). rx: the sample's receiver rows of ``AttemptBatch.rx``."""
    lead_in = int(math.ceil(LEAD_IN_S * fs))
    n = lead_in + capture
    plans_i, plans_t, work = no_plans()
    synthesize_core(seed, attempt, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                    noise_dbm, lead_in, out, np.empty((SYNTHESIS_ROWS, n), np.complex128),
                    np.empty(max(n, chunks)), plans_i, plans_t, work)


@njit
def synthesize_core(seed, attempt, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                    noise_dbm, lead_in, out, scratch, real_scratch, plans_i, plans_t, work):
    """``synthesize_sample`` with its scratch given (it allocates nothing: the CUDA target
    runs it too): complex (SYNTHESIS_ROWS, lead_in + capture), real (at least lead_in +
    capture and chunks), and the transform's plans and work (``kernel.dft``)."""
    key = attempt_key(np.uint64(seed), np.uint64(attempt))
    n = lead_in + capture
    s = scratch[W_SIGNAL, :n]
    transmitted_into(key, fs, bandwidth_hz, lead_in, real_scratch, s)
    spectrum = scratch[W_SPECTRUM, :n]
    dft(s, spectrum, plans_i, plans_t, work)
    powers = real_scratch[:chunks]
    for j in range(n_rx):
        window_dbm(key, j, rx[j], chunks, fading_on, powers)
        receive_into(key, j, spectrum, fs, capture, lead_in, rx[j, R_DIST] * 1000.0 /
                     SPEED_OF_LIGHT_M_S, rx[j, R_FOFF], powers, noise_dbm, bandwidth_hz,
                     out[j], scratch, plans_i, plans_t, work)


@njit(parallel=True)
def synthesize_many(seed, attempts, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                    noise_dbm, out):
    """synthesize_sample for each row (samples in parallel): out[k, :n_rx[k]]."""
    for k in numba.prange(attempts.shape[0]):
        synthesize_sample(seed, attempts[k], rx[k], n_rx[k], chunks, fading_on, fs, capture,
                          bandwidth_hz, noise_dbm, out[k])


def synthesize(batch, rows, seed: int, chunks: int, sample_rate_hz: float, duration_ms: float,
               bandwidth_hz: float, noise_floor_dbm: float, fading: bool = True,
               threads: int | None = None) -> np.ndarray:
    """IQ of the accepted samples ``rows`` of an AttemptBatch (from ``run_attempts`` with this
    seed): complex64, (samples, max receivers, capture samples), zeros in padding slots.
    ``chunks`` and ``fading`` are the configuration's ``num_chunks`` and ``enable_fading``."""
    from .jit import kernel_launch
    rows = np.asarray(rows, dtype=np.int64)
    if not batch.valid[rows].all():
        raise ValueError("IQ is synthesized for accepted samples only")
    capture = int(round(sample_rate_hz * duration_ms / 1000.0))
    out = np.zeros((len(rows), batch.rx.shape[1], capture), np.complex64)
    with kernel_launch(threads):
        synthesize_many(np.uint64(seed), batch.attempt_index[rows].astype(np.uint64),
                        np.ascontiguousarray(batch.rx[rows]),
                        batch.n_receivers[rows].astype(np.int64), int(chunks), fading,
                        float(sample_rate_hz), capture, float(bandwidth_hz),
                        float(noise_floor_dbm), out)
    return out
