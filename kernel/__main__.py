"""``python -m heimdall_synth.kernel``: run the kernel directly and print what it made (a quick look, and the
example of calling the kernel from Python that the README shows)."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from . import GenerationConfig, run_attempts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m heimdall_synth.kernel", description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--config", type=json.loads, default={},
                    help='JSON object of parameter-table fields, e.g. \'{"use_random_receivers": true}\'')
    args = ap.parse_args(argv)
    cfg = GenerationConfig.from_dict(args.config)
    t0 = time.perf_counter()
    batch = run_attempts(cfg, args.seed, 0, args.attempts)
    dt = time.perf_counter() - t0
    ok = batch.accepted()
    print(f"{len(batch):,} attempts in {dt:.2f} s ({len(batch) / dt:,.0f}/s, including "
          f"compile or cache load): {len(ok):,} valid ({len(ok) / max(len(batch), 1):.1%})")
    print("rejections:", batch.rejection_counts())
    if len(ok):
        print(f"median GDOP {np.median(ok.gdop):.2f}, median CRB {np.median(ok.crb_m) / 1000:.1f} km, "
              f"mean detecting receivers {ok.n_detected.mean():.2f}, "
              f"mean SNR {np.nanmean(ok.mean_snr_db):.1f} dB")
        i = 0
        print(f"first valid sample (attempt {ok.attempt_index[i]}): tx at "
              f"{ok.tx_latitude[i]:.4f} N {ok.tx_longitude[i]:.4f} E, "
              f"{ok.tx_power_dbm[i]:.1f} dBm")
        for j in range(ok.n_receivers[i]):
            print(f"  rx {ok.rx_id[i, j]}: {ok.distance_km[i, j]:7.1f} km  "
                  f"rssi {ok.rssi_dbm[i, j]:7.1f} dBm  snr {ok.snr_db[i, j]:5.1f} dB  "
                  f"detected {bool(ok.signal_present[i, j])}")


if __name__ == "__main__":
    main()
