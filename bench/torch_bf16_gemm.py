#!/usr/bin/python3
"""PyTorch bf16 GEMM timings (oneDNN on the CPU), the bf16 reference for bench/gemm_vs_openblas.ts.

    /usr/bin/python3 bench/torch_bf16_gemm.py --serve --threads 2

Reads one JSON case per stdin line ({"name", "M", "N", "K", "ta", "tb", "wgrad", "bias", "act",
"form", "min_ms", "clock": "wall"|"cpu"}) and answers one JSON line each ({"name", "ms"}), after a first line with torch's version,
thread count and oneDNN state. Each case runs on bf16 tensors laid out as the engine stores them
(A [K, M] when ta, B [N, K] when tb), in one of two forms:
  - "plain" (the default): the product alone, as OpenBLAS does on the fp32 side:
    torch.matmul(op(a), op(b), out=c) into a bf16 c. Bias, GELU and the f32 C of a weight gradient
    are not applied (ours includes them: conservative for us).
  - "same": the work our gemm call does, as a bf16 PyTorch model runs it (nn.Linear, then nn.GELU):
    torch.addmm(bias, op(a), op(b), out=pre) with a bf16 bias when the case has one, then the exact
    (erf) GELU of pre into a second bf16 tensor when act (pre is what GELU's backward keeps, as our
    preact output). Outputs are preallocated (out=), so allocation is not timed (favours PyTorch).
    A weight gradient (wgrad) under bf16 autocast: the matmul into a bf16 c, then its cast into the
    f32 .grad of the fp32 parameter (copy_ into a preallocated f32 tensor), as autograd's backward of
    the weight's cast does. Cases with none of these time as "plain".
Reported: the median milliseconds over runs filling min_ms.
"""
import argparse
import json
import sys
import time

import torch


def info():
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else None}


def make_run(c):
    g = torch.Generator().manual_seed(0)
    M, N, K = c["M"], c["N"], c["K"]
    bf = torch.bfloat16
    a = torch.randn((K, M) if c.get("ta") else (M, K), generator=g).to(bf)
    b = torch.randn((N, K) if c.get("tb") else (K, N), generator=g).to(bf)
    opa = a.t() if c.get("ta") else a
    opb = b.t() if c.get("tb") else b
    out = torch.zeros(M, N, dtype=bf)
    same = c.get("form", "plain") == "same"
    if same and c.get("wgrad"):
        grad = torch.zeros(M, N, dtype=torch.float32)

        def wgrad():
            torch.matmul(opa, opb, out=out)
            grad.copy_(out)

        return wgrad
    if same and (c.get("bias") or c.get("act")):
        bias = torch.randn(N, generator=g).to(bf) if c.get("bias") else torch.zeros(N, dtype=bf)
        y = torch.zeros(M, N, dtype=bf)

        def linear_gelu():
            torch.addmm(bias, opa, opb, out=out)
            if c.get("act"):
                torch._C._nn.gelu(out, out=y)

        return linear_gelu
    return lambda: torch.matmul(opa, opb, out=out)


def time_case(c, min_ms, clock="wall"):
    run = make_run(c)
    with torch.no_grad():
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true", required=True)
    p.add_argument("--threads", type=int, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)  # Debian's torch starts with 1 thread
    print(json.dumps({"torch": info()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            c = json.loads(line)
            print(json.dumps({"name": c["name"], "ms": time_case(c, float(c.get("min_ms", 300)), c.get("clock", "wall"))}), flush=True)


if __name__ == "__main__":
    main()
