"""SM4-GCM and SM3 throughput through our wrappers, as a ratio to `openssl speed` in the same run.

Debian's openssl has no SM4-GCM, so the SM4 anchor is `openssl speed -evp sm4-ctr` (GCM adds
GHASH on top of CTR). Where the CPU has GFNI and AVX-512, `sm4.gcm_encrypt` runs our native
extension (`backend=gfni-avx512` in the RESULT line; goal: ≥ 4× OpenSSL's sm4-ctr at 64 KiB),
elsewhere OpenSSL through `cryptography` (`backend=openssl`; a ratio near 1 means the wrapper
costs next to nothing). Both sides run on one core; each figure is the best of several
alternating rounds to damp machine noise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from control_plane.crypto import sm3, sm4  # noqa: E402

SIZES = {"64k": 65536, "4k": 4096}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "1.5"))


def openssl_speed(algo: str, size: int) -> float:
    """Bytes per second from `openssl speed -mr -evp ALGO -bytes SIZE` (one process, one core)."""
    out = subprocess.run(["openssl", "speed", "-mr", "-evp", algo, "-bytes", str(size), "-seconds", str(int(max(1, SECONDS)))],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    for line in out.splitlines():
        if line.startswith("+F:"):
            return float(line.split(":")[-1])
    raise RuntimeError(f"no +F line in openssl speed output for {algo}")


def ours(fn, size: int) -> float:  # noqa: ANN001
    """Bytes per second of fn(message) over SECONDS of repeated calls."""
    msg = os.urandom(size)
    n, t0 = 0, time.perf_counter()
    deadline = t0 + SECONDS
    while time.perf_counter() < deadline:
        for _ in range(16):
            fn(msg)
        n += 16
    return n * size / (time.perf_counter() - t0)


def main() -> None:
    """Measure, print a table, end with the RESULT line."""
    key = sm4.generate_key()
    enc = lambda m: sm4.gcm_encrypt(key, m)  # noqa: E731
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for label, size in SIZES.items():
            for name, value in (
                (f"openssl_sm4ctr_{label}", lambda: openssl_speed("sm4-ctr", size)),
                (f"ours_sm4gcm_{label}", lambda: ours(enc, size)),
                (f"openssl_sm3_{label}", lambda: openssl_speed("sm3", size)),
                (f"ours_sm3_{label}", lambda: ours(sm3, size)),
            ):
                best[name] = max(best.get(name, 0.0), value())
    print(f"{'':14}{'ours MB/s':>12}{'openssl MB/s':>14}{'ratio':>8}")
    ratios = {}
    for label in SIZES:
        for ours_name, ref_name, tag in ((f"ours_sm4gcm_{label}", f"openssl_sm4ctr_{label}", "sm4"), (f"ours_sm3_{label}", f"openssl_sm3_{label}", "sm3")):
            r = best[ours_name] / best[ref_name]
            ratios[f"{tag}_{label}"] = r
            print(f"{tag + ' ' + label:14}{best[ours_name] / 1e6:12.1f}{best[ref_name] / 1e6:14.1f}{r:8.2f}")
    fields = [f"sm4gcm_64k_MBps={best['ours_sm4gcm_64k'] / 1e6:.1f}", f"sm3_64k_MBps={best['ours_sm3_64k'] / 1e6:.1f}",
              f"ratio_sm4gcm_vs_openssl_sm4ctr_64k={ratios['sm4_64k']:.2f}", f"ratio_sm3_vs_openssl_64k={ratios['sm3_64k']:.2f}",
              f"ratio_sm4gcm_vs_openssl_sm4ctr_4k={ratios['sm4_4k']:.2f}", f"ratio_sm3_vs_openssl_4k={ratios['sm3_4k']:.2f}",
              f"min_ratio_64k={min(ratios['sm4_64k'], ratios['sm3_64k']):.2f}", f"backend={sm4.BACKEND}"]  # fmt: skip
    aesni = aesni_path(key)
    if aesni is not None:  # the slower native path, for CPUs without GFNI/AVX-512, against the same OpenSSL figure
        print(f"{'sm4 64k aesni':14}{aesni / 1e6:12.1f}{best['openssl_sm4ctr_64k'] / 1e6:14.1f}{aesni / best['openssl_sm4ctr_64k']:8.2f}")
        fields += [f"sm4gcm_aesni_64k_MBps={aesni / 1e6:.1f}", f"ratio_sm4gcm_aesni_vs_openssl_sm4ctr_64k={aesni / best['openssl_sm4ctr_64k']:.2f}"]
    print("RESULT " + " ".join(fields))


def aesni_path(key: bytes) -> float | None:
    """Bytes per second of SM4-GCM at 64 KiB on the AES-NI/AVX2 path, forced, when the CPU has a faster one too (else None)."""
    if sm4.BACKEND != "gfni-avx512":
        return None
    import govctl_sm4

    govctl_sm4.force_path("aesni-avx2")
    try:
        return max(ours(lambda m: sm4.gcm_encrypt(key, m), SIZES["64k"]) for _ in range(ROUNDS))
    finally:
        govctl_sm4.force_path("auto")


if __name__ == "__main__":
    main()
