"""Fixed layouts shared by the kernel and the reference: draw numbers, codes and output columns.

A draw number is the triple (stream, slot, sub); ``kernel.rng`` turns it into bits. The layout
is part of the data contract: changing one changes every dataset generated afterwards. A draw
whose value is not needed (the azimuth of an omnidirectional antenna, say) is simply not made;
since draws are keyed, skipping one never shifts another.

stream ATTEMPT (slot 0), one draw each:
  0 receiver count   1 inside/outside box   2 tx latitude   3 tx longitude   4 duty cycle
  5 on/off           6 power quality q      7 power jitter (normal)          8 tx antenna type
  9 tx gain          10 tx azimuth          11 tx beamwidth  12 tx front-to-back
  13 tx polarization 14 oscillator offset   15 tx clutter environment
stream PLACE (slot = random receiver slot): 0 latitude / lattice y jitter, 1 longitude / x
  jitter, 2 ground altitude (without a terrain), 3 antenna type, 4 gain, 5 azimuth,
  6 beamwidth, 7 front-to-back, 8 polarization
stream LINK (slot = receiver slot):
  0 polarization loss  1 troposphere  2 sporadic-E occurs  3 sporadic-E gain
  4 receiver frequency error (normal)  5 Rician K  6 the station's own shadowing (normal;
  random receivers, whose field is seen once)
  32 + w             fast fading of window w: Exp(1) power (Rayleigh), or the in-phase normal
                     (Rician) whose quadrature normal is at 32 + w + 64
Normals and exponentials use ziggurats (kernel.rng); their rare retries take subs >= 128.
What is fixed in the world takes no draw: a fixed station's antenna, height and clutter, the
terrain loss of a link (a function of its ends), the shadowing fields (kernel.shadowing, keyed
by the dataset seed alone).
"""

from __future__ import annotations

import math

STREAM_ATTEMPT, STREAM_PLACE, STREAM_LINK = 0, 1, 2


# ATTEMPT stream subs
A_RX_COUNT, A_INSIDE, A_TX_LAT, A_TX_LON, A_DUTY, A_ON = 0, 1, 2, 3, 4, 5
A_QUALITY, A_JITTER, A_TX_ANT, A_TX_GAIN, A_TX_AZ, A_TX_BW = 6, 7, 8, 9, 10, 11
A_TX_F2B, A_TX_POL, A_OSC, A_TX_CLUTTER = 12, 13, 14, 15
# PLACE stream subs
P_Y, P_X, P_ALT, P_ANT, P_GAIN, P_AZ, P_BW, P_F2B, P_POL = range(9)
# LINK stream subs
L_POL_LOSS, L_TROPO, L_ES, L_ES_GAIN, L_FREQ_ERR, L_RICE_K, L_OWN_SHADOW = range(7)
L_FADING0 = 32

# Rejection codes: 0 is accepted; REJECT_REASONS[code - 1] names the others.
REJECT_REASONS = ("tx_off", "min_receivers", "min_snr", "gdop", "crb")
ACCEPTED, R_TX_OFF, R_MIN_RECEIVERS, R_MIN_SNR, R_GDOP, R_CRB = range(6)

# Antenna types: transmitter codes 0..2 and receiver codes 0..3, in the order of
# defaults.TX_ANTENNAS / RX_ANTENNAS. Rows: gain lo, gain hi (dBi), full beamwidth lo, hi (deg;
# 0 = omnidirectional), front-to-back lo, hi (dB). The table is documented in docs/MODEL.md.
TX_ANTENNA_TABLE = (
    (0.0, 2.0, 0.0, 0.0, 0.0, 0.0),     # whip
    (-3.0, 0.0, 0.0, 0.0, 0.0, 0.0),    # rubber duck
    (3.0, 6.0, 60.0, 90.0, 10.0, 15.0),  # portable directional
)
RX_ANTENNA_TABLE = (
    (0.0, 3.0, 0.0, 0.0, 0.0, 0.0),      # omni vertical
    (10.0, 15.0, 30.0, 60.0, 15.0, 25.0),  # yagi
    (8.0, 12.0, 60.0, 80.0, 15.0, 20.0),   # log-periodic
    (6.0, 9.0, 0.0, 0.0, 0.0, 0.0),      # collinear
)
#: Directional antennas are horizontally polarised this often; omnidirectional ones never.
P_HORIZONTAL_DIRECTIONAL = 0.05

# Per-attempt float columns (AttemptBatch.scalars[:, F_*]).
SCALAR_FIELDS = (
    "tx_latitude", "tx_longitude", "tx_altitude_m", "tx_power_nominal_dbm", "tx_power_dbm",
    "tx_freq_offset_hz", "crb_sigma_db", "mean_snr_db", "gdop", "hdop", "crb_m",
    "overall_confidence", "tx_ground_m", "tx_clutter_db",
)
(F_TX_LAT, F_TX_LON, F_TX_ALT, F_P_NOMINAL, F_P_EFFECTIVE, F_TX_OFFSET, F_SIGMA, F_MEAN_SNR,
 F_GDOP, F_HDOP, F_CRB, F_CONFIDENCE, F_TX_GROUND, F_TX_CLUTTER) = range(len(SCALAR_FIELDS))

# Per-receiver float columns (AttemptBatch.rx[:, slot, R_*]); padding slots are NaN.
# The first group is what heimdall.measurement_features stores; the second explains each link's
# budget (dB).
RX_FIELDS = (
    "rx_lat", "rx_lon", "rx_alt_m", "distance_km", "rssi_dbm", "rssi_std_db", "rssi_min_dbm", "rssi_max_dbm", "snr_db", "noise_floor_dbm",
    "psd_dbm_per_hz", "freq_offset_hz",
    "fspl_db", "diffraction_db", "rx_clutter_db", "shadowing_db", "fading_db", "absorption_db",
    "troposphere_db", "sporadic_e_db", "polarization_db", "tx_gain_db", "rx_gain_db",
    "line_of_sight",
)
(R_LAT, R_LON, R_ALT, R_DIST, R_RSSI, R_RSSI_STD, R_RSSI_MIN, R_RSSI_MAX,
 R_SNR, R_NOISE, R_PSD, R_FOFF, R_FSPL, R_DIFF, R_RX_CLUTTER, R_SHADOW, R_FADING, R_ABSORB,
 R_TROPO, R_ES, R_POL, R_GTX, R_GRX, R_LOS) = range(len(RX_FIELDS))

# Physical constants.
EARTH_RADIUS_M = 6_371_000.0
K_FACTOR = 4.0 / 3.0
KM_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0 / 1000.0
SPEED_OF_LIGHT = 299_792_458.0
RSS_PATH_EXPONENT = 2.0
RSS_C = 10.0 * RSS_PATH_EXPONENT / math.log(10.0)

# Model constants (documented in docs/MODEL.md).
FADING_FLOOR = 1e-12           # fading power floor (-120 dB) so log10 never sees 0
RX_FREQ_ERROR_HZ = 2.0         # sigma of each receiver's reference error
ES_F_MIN_MHZ, ES_F_MAX_MHZ = 28.0, 225.0
ES_D_MIN_KM, ES_D_MAX_KM = 500.0, 2500.0
ES_PROBABILITY = 0.005         # of an in-range link at 28-50 MHz; falls above (sporadic_e_probability)
ES_FALL_MHZ = 40.0             # e-folding of that probability above 50 MHz
ES_GAIN_LO, ES_GAIN_HI = 20.0, 40.0
TROPO_MAX_DB = 0.5             # +-, reached at 100 km
CONFIDENCE_FULL_SNR_DB = 30.0  # overall_confidence = clip(mean_snr_db / this, 0, 1)
SINGULAR_RTOL = 1e-9           # det(A) <= this * a11 a22 a33 counts as singular
MIN_PATH_KM = 0.01             # path loss is not defined closer than 10 m
RANDOM_RX_HEIGHT_M = 10.0      # antenna height of random receivers above their ground


def sporadic_e_probability(f_mhz: float) -> float:
    """Chance that a 500-2500 km link is enhanced by sporadic-E at f_mhz (docs/MODEL.md): flat
    from 28 to 50 MHz, then falling by e every ES_FALL_MHZ, none above 225 MHz."""
    if not ES_F_MIN_MHZ <= f_mhz <= ES_F_MAX_MHZ:
        return 0.0
    return ES_PROBABILITY * math.exp(-max(f_mhz - 50.0, 0.0) / ES_FALL_MHZ)
