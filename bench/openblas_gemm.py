#!/usr/bin/python3
"""numpy/OpenBLAS fp32 GEMM timings, the reference for bench/gemm_vs_openblas.ts.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
        /usr/bin/python3 bench/openblas_gemm.py '[{"name": "qkv", "M": 1576, "N": 2304, "K": 768, "ta": 0, "tb": 1}]'

Each case runs C = op(A) op(B) (+ C with "acc": 1, i.e. beta = 1) on float32 numpy arrays laid out as
the engine stores them (A [K, M] when ta, B [N, K] when tb), by calling cblas_sgemm (row-major, with
the transpose flags) of the BLAS library numpy itself loaded, through ctypes: numpy's matmul cannot
express beta = 1, and this way both sides do exactly the same GEMM. Prints one JSON object: that
library (from /proc/self/maps, with openblas_get_config / corename when it is OpenBLAS), and per
case the median milliseconds over runs filling min_ms (argv[2], default 300).

With --serve it reads one JSON case per stdin line ({"name", "M", "N", "K", "ta", "tb", "acc",
"min_ms", "clock": "wall"|"cpu"}) and answers one JSON line each ({"name", "ms"}), after a first line with the BLAS info,
so a caller can interleave its own timings with OpenBLAS's shape by shape.
"""
import ctypes
import json
import os
import sys
import time

import numpy as np


def blas_lib():
    a = np.ones((64, 64), np.float32)
    a @ a  # make sure numpy's BLAS library is loaded
    with open("/proc/self/maps") as f:
        paths = sorted({os.path.realpath(line.split()[-1]) for line in f if "blas" in line.split()[-1].lower()})
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
            f32p = ctypes.POINTER(ctypes.c_float)
            lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, f32p, ctypes.c_int, f32p, ctypes.c_int,
                                                             ctypes.c_float, f32p, ctypes.c_int]
            lib.cblas_sgemm.restype = None
            return lib
        except (OSError, AttributeError):
            pass
    raise SystemExit("no cblas_sgemm in the BLAS library numpy loaded: " + ", ".join(paths))


def blas_info():
    a = np.ones((64, 64), np.float32)
    a @ a  # make sure the BLAS library is loaded
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "blas" in os.path.basename(p).lower() and p.startswith("/"):
                libs.add(os.path.realpath(p))
    info = {"numpy": np.__version__, "libs": sorted(libs), "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    for p in sorted(libs):
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            info["openblas_config"] = lib.openblas_get_config().decode()
            info["openblas_core"] = lib.openblas_get_corename().decode()
            info["openblas_threads"] = lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            pass
    return info


def time_case(c, min_ms, clock="wall"):
    rng = np.random.default_rng(0)
    M, N, K = c["M"], c["N"], c["K"]
    a = rng.standard_normal((K, M) if c.get("ta") else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if c.get("tb") else (K, N), dtype=np.float32)
    c_ = np.zeros((M, N), np.float32)
    lib = blas_lib()
    f32p = ctypes.POINTER(ctypes.c_float)
    pa, pb, pc = (x.ctypes.data_as(f32p) for x in (a, b, c_))
    ta = 112 if c.get("ta") else 111  # CblasTrans / CblasNoTrans
    tb = 112 if c.get("tb") else 111
    lda, ldb = a.shape[1], b.shape[1]
    beta = 1.0 if c.get("acc") else 0.0

    def run():
        lib.cblas_sgemm(101, ta, tb, M, N, K, 1.0, pa, lda, pb, ldb, beta, pc, N)  # 101: CblasRowMajor

    run()
    now = time.process_time if clock == "cpu" else time.perf_counter  # cpu: this process's CPU time
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start) * 1e3 < min_ms:
        t0 = now()
        run()
        times.append((now() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def serve():
    print(json.dumps({"blas": blas_info()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            c = json.loads(line)
            print(json.dumps({"name": c["name"], "ms": time_case(c, float(c.get("min_ms", 300)), c.get("clock", "wall"))}), flush=True)


def main():
    if sys.argv[1:] == ["--serve"]:
        return serve()
    cases = json.loads(sys.argv[1])
    min_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
    res = {"blas": blas_info(), "cases": []}
    for c in cases:
        res["cases"].append({"name": c["name"], "ms": time_case(c, min_ms)})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
