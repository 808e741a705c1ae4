#!/usr/bin/env python3
"""Merges the JSON files of one bench/gpu-check.sh run into h200.json and prints the summary table.

  python3 bench/gpu_summary.py OUT_DIR [--dry 0|1] [--batch B] [--seconds S]
Stages come from the STAGE_TEXT environment variable ("name rc seconds" per line). Missing or broken
files are reported, never fatal: the summary of a partial run is still worth keeping.
"""
import argparse
import datetime
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except FileNotFoundError:
        return None, "missing"
    except Exception as e:  # truncated by a timeout, say
        return None, f"{type(e).__name__}: {e}"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dry", default="0")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=None)
    a = ap.parse_args()
    files = {k: load(os.path.join(a.out, f"{k}.json")) for k in ("parity", "vitest", "step", "pytorch", "pytorch_compile")}
    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "dry_run": a.dry == "1",
        "batch": a.batch,
        "seconds": a.seconds,
        "stages": [],
        "files": {k: (err or "ok") for k, (_, err) in files.items()},
    }
    for line in os.environ.get("STAGE_TEXT", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            res["stages"].append({"stage": parts[0], "rc": parts[1], "seconds": parts[2]})

    det, _ = load(os.path.join(os.environ.get("SCRATCH", "/nonexistent"), "determinism.json"))
    if det:
        res["determinism"] = det
    # Precision side by side: our step in fp32 (step.json) and bf16 (step_bf16.json); PyTorch eager in
    # bf16 autocast (pytorch.json, its CUDA default) and fp32 (pytorch_fp32.json). Extra files in SCRATCH.
    scratch = os.environ.get("SCRATCH", "/nonexistent")
    step16, _ = load(os.path.join(scratch, "step_bf16.json"))
    torch32, _ = load(os.path.join(scratch, "pytorch_fp32.json"))
    if step16 or torch32:
        eager_of = lambda d: ((d or {}).get("step", {}).get("eager") or {}).get("images_per_s")
        step32 = files["step"][0]
        res["precision"] = {
            "step_bf16": {k: v for k, v in (step16 or {}).items() if k not in ("profile", "losses", "gradNorm")},
            "pytorch_fp32": torch32 and torch32.get("step"),
            "images_per_s": {
                "ours_fp32": step32 and step32.get("imagesPerS"),
                "ours_bf16": step16 and step16.get("imagesPerS"),
                "pytorch_eager_fp32": eager_of(torch32),
                "pytorch_eager_bf16": eager_of(files["pytorch"][0]),
            },
        }
    parity, _ = files["parity"]
    if parity:
        res["device"] = parity.get("device")
        res["parity"] = {"summary": parity.get("summary"), "not_passing": [r for r in parity.get("parity", []) if r.get("status") != "PASS"], "rows": parity.get("parity", [])}
        res["ceilings"] = parity.get("ceilings")
        res["kernels"] = parity.get("timing")
    vt, _ = files["vitest"]
    if vt:
        failed = []
        for f in vt.get("testResults", []):
            for t in f.get("assertionResults", []):
                if t.get("status") == "failed":
                    failed.append({"test": t.get("fullName"), "message": (t.get("failureMessages") or [""])[0][:500]})
        res["vitest"] = {k: vt.get(k) for k in ("numPassedTests", "numFailedTests", "numPendingTests", "numTotalTests", "success")}
        res["vitest"]["failed"] = failed
    step, _ = files["step"]
    if step:
        res["step"] = {k: v for k, v in step.items() if k not in ("profile", "losses", "gradNorm")}
        res["step"]["losses_last"] = (step.get("losses") or [None])[-1]
        res["step"]["profile"] = step.get("profile")
    ref = {}
    for key in ("pytorch", "pytorch_compile"):
        d, _ = files[key]
        if d:
            ref.setdefault("torch", d.get("torch"))
            ref.setdefault("device", d.get("device"))
            ref.update({f"step_{k}": v for k, v in d.get("step", {}).items()})
            if "sdpa" in d:
                ref["sdpa"] = d["sdpa"]
            if d.get("skipped"):
                ref.setdefault("skipped", {}).update(d["skipped"])
    if ref:
        res["pytorch"] = ref

    # Side by side: the step, and attention against SDPA on the same shapes.
    ours = step.get("imagesPerS") if step else None
    eager = ref.get("step_eager", {}).get("images_per_s") if ref else None
    comp = ref.get("step_compile", {}).get("images_per_s") if ref else None
    res["compare"] = {
        "images_per_s": {"ours": ours, "pytorch_eager": eager, "pytorch_compile": comp},
        "ours_over_eager": ours / eager if ours and eager else None,
        "ours_over_compile": ours / comp if ours and comp else None,
        "attention": [],
    }
    rows = (res.get("kernels") or {}).get("rows", [])
    for s in ref.get("sdpa", []) if ref else []:
        tag = f"{s['case']} B{s['B']} T{s['T']} H{s['H']} Hd{s['Hd']}"
        f = next((r for r in rows if r["op"] == "attention" and r["case"] == tag), None)
        b = next((r for r in rows if r["op"] == "attention_bwd" and r["case"] == tag), None)
        res["compare"]["attention"].append(
            {
                "case": tag,
                "ours_fwd_ms": f and f.get("ms"),
                "sdpa_fwd_ms": s["fwd_ms"],
                "ours_fwd_bwd_ms": (f and b and f.get("ms") is not None and b.get("ms") is not None) and f["ms"] + b["ms"] or None,
                "sdpa_fwd_bwd_ms": s["fwd_bwd_ms"],
            }
        )
    with open(os.path.join(a.out, "h200.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")

    # The table (the device tool returns the end of the output).
    print("\n==== gpu-check summary" + (" (DRY RUN: no GPU)" if res["dry_run"] else "") + " ====")
    print("device:", res.get("device", "?"))
    if res.get("precision"):
        ips = res["precision"]["images_per_s"]
        print("images/s fp32 | bf16: ours " + fmt(ips["ours_fp32"]) + " | " + fmt(ips["ours_bf16"]) + ", PyTorch eager "
              + fmt(ips["pytorch_eager_fp32"]) + " | " + fmt(ips["pytorch_eager_bf16"]))
    for s in res["stages"]:
        print(f"  stage {s['stage']:<16} rc={s['rc']:<8} {s['seconds']:>4}s")
    if parity:
        sm = parity.get("summary", {})
        print(f"parity: {sm.get('pass')} pass, {sm.get('fail')} fail, {sm.get('missing')} missing")
        for r in res["parity"]["not_passing"][:25]:
            print(f"  {r['status']:<7} {r['op']:<15} {r['case']:<40} {r.get('detail', '')[:90]}")
        if det:
            print(f"determinism: {det['cases']} cases rerun on the same inputs, {len(det['differ'])} with other bits")
        c = parity.get("ceilings", {})
        print(f"ceilings: copy {fmt(c.get('copy_kernel_gbs'), 0)} / memcpy {fmt(c.get('copy_memcpy_gbs'), 0)} GB/s, mma.sync bf16 {fmt(c.get('mma_sync_bf16_tflops'), 0)} TFLOP/s, "
              f"H2D pageable {fmt(c.get('h2d_pageable_gbs'))} / pinned {fmt(c.get('h2d_pinned_gbs'))} GB/s")
        for r in rows:
            if r.get("op") == "gemm" or r.get("op", "").startswith("attention"):
                print(f"  {r['op']:<14} {r['case'][:52]:<52} {fmt(r.get('ms'), 3):>8} ms {fmt(r.get('tflops')):>7} TFLOP/s ({fmt(r.get('pct_gemm_ref'))}% of 790)")
    if "vitest" in res:
        v = res["vitest"]
        print(f"vitest gpu: {v.get('numPassedTests')} passed, {v.get('numFailedTests')} failed, {v.get('numPendingTests')} skipped")
        for t in v["failed"][:10]:
            print("  FAILED", t["test"], "|", t["message"].splitlines()[0][:120] if t["message"] else "")
    print(f"step images/s: ours {fmt(ours)}, pytorch eager {fmt(eager)}, torch.compile {fmt(comp)} (batch {a.batch})")
    for r in res["compare"]["attention"]:
        print(f"  attention {r['case']:<36} fwd ours {fmt(r['ours_fwd_ms'], 3)} vs sdpa {fmt(r['sdpa_fwd_ms'], 3)} ms; fwd+bwd ours {fmt(r['ours_fwd_bwd_ms'], 3)} vs sdpa {fmt(r['sdpa_fwd_bwd_ms'], 3)} ms")
    bad = [k for k, v in res["files"].items() if v != "ok"]
    if bad:
        print("files not produced or unreadable:", ", ".join(f"{k} ({res['files'][k]})" for k in bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
