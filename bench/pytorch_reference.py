#!/usr/bin/env python3
"""The MEDiC training step in PyTorch, as the reference for bench/gpu_step.ts (same model, same batch).

Student ViT-B/16 (q/v bias, LayerScale 0.1, DropPath 0..0.1) on the sparse encoding (mask ratio 0.4:
1 + 118 tokens), distill head Linear(768, 768), frozen CLIP ViT-B/16-architecture teacher (random
weights, no_grad, targets = last block outputs -> parameter-free LayerNorm), 8-block 512-wide pixel
decoder, the three losses (SmoothL1 tokens, CLS cosine / tau, normalised-pixel MSE), AdamW with
gradient clipping at 3.0. On CUDA: bf16 autocast, timed eager and with torch.compile; images/s =
batch / median step time (CUDA events, after warm-up). Also times F.scaled_dot_product_attention in
bf16 at the shapes of our attention kernel, forward and forward+backward. Prints one JSON object.

  python3 bench/pytorch_reference.py --batch 256 --steps 10 --out ref.json   (on the GPU machine)
  python3 bench/pytorch_reference.py --smoke                                  (tiny, CPU, any torch)
torch.compile and SDPA need torch >= 2.0; with an older torch they are reported as skipped.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
HAS_COMPILE = hasattr(torch, "compile")


def attention(q, k, v):
    """q, k, v [B, H, T, Hd] -> [B, H, T, Hd]."""
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v)
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    return s.softmax(-1) @ v


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm computed in fp32, as CUDA autocast runs layer_norm. CPU autocast in torch 1.13
    leaves layer_norm out of its lists, so a bf16 input meets the fp32 weight and fails ("expected
    scalar type BFloat16 but found Float"); outside autocast this is plain nn.LayerNorm."""

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p).to(x.dtype) / (1 - self.p)
        return x * keep


class Attn(nn.Module):
    def __init__(self, dim, heads, qv_bias_only):
        super().__init__()
        self.heads = heads
        self.qv_bias_only = qv_bias_only
        self.qkv = nn.Linear(dim, 3 * dim, bias=not qv_bias_only)
        if qv_bias_only:  # BEiT-style: learnable q and v biases, k bias fixed at 0
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, C = x.shape
        if self.qv_bias_only:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
            qkv = F.linear(x, self.qkv.weight, bias)
        else:
            qkv = self.qkv(x)
        qkv = qkv.reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        o = attention(qkv[0], qkv[1], qkv[2])
        return self.proj(o.transpose(1, 2).reshape(B, T, C))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LN block; layer_scale None for CLIP and the decoder."""

    def __init__(self, dim, heads, qv_bias_only=False, layer_scale=None, drop_path=0.0, quick_gelu=False):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-5 if quick_gelu else 1e-6)
        self.attn = Attn(dim, heads, qv_bias_only)
        self.norm2 = LayerNorm(dim, eps=1e-5 if quick_gelu else 1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), QuickGELU() if quick_gelu else nn.GELU(), nn.Linear(4 * dim, dim))
        self.ls1 = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale else None
        self.ls2 = nn.Parameter(layer_scale * torch.ones(dim)) if layer_scale else None
        self.drop = DropPath(drop_path)

    def forward(self, x):
        a = self.attn(self.norm1(x))
        x = x + self.drop(a * self.ls1 if self.ls1 is not None else a)
        m = self.mlp(self.norm2(x))
        return x + self.drop(m * self.ls2 if self.ls2 is not None else m)


class Student(nn.Module):
    def __init__(self, img, patch, dim, depth, heads, drop_path=0.1):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 1 + n, dim) * 0.02)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, qv_bias_only=True, layer_scale=0.1, drop_path=drop_path * i / max(1, depth - 1)) for i in range(depth)]
        )
        self.norm = LayerNorm(dim, eps=1e-6)

    def forward(self, images, visible):
        x = self.patch(images).flatten(2).transpose(1, 2) + self.pos[:, 1:]
        x = torch.gather(x, 1, visible[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([(self.cls + self.pos[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


class ClipTeacher(nn.Module):
    def __init__(self, img, patch, width, layers, heads):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        n = (img // patch) ** 2
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(1 + n, width) * width**-0.5)
        self.ln_pre = LayerNorm(width)
        self.blocks = nn.ModuleList([Block(width, heads, quick_gelu=True) for _ in range(layers)])

    def forward(self, images):
        x = self.conv1(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1).to(x.dtype), x], 1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        for b in self.blocks:
            x = b(x)
        return F.layer_norm(x.float(), x.shape[-1:], eps=1e-6)  # targets: parameter-free LN of the last block


def sincos_2d(dim, grid):
    """MAE's fixed 2-D sin-cos embedding, [1 + grid^2, dim] with a zero CLS row."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], 1)

    gh, gw = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")
    emb = torch.cat([one(dim // 2, gw), one(dim // 2, gh)], 1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], 0).float()


class Decoder(nn.Module):
    def __init__(self, in_dim, dim, depth, heads, grid, patch_pixels):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos", sincos_2d(dim, grid)[None])
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_pixels)
        self.n = grid * grid

    def forward(self, enc, visible, masked):
        x = self.embed(enc)  # [B, 1 + V, Dd]
        B, _, Dd = x.shape
        full = self.mask_token.to(x.dtype).expand(B, 1 + self.n, Dd).clone()
        full[:, :1] = x[:, :1]
        full.scatter_(1, (visible + 1)[..., None].expand(-1, -1, Dd), x[:, 1:])
        full = full + self.pos.to(x.dtype)
        for b in self.blocks:
            full = b(full)
        full = self.norm(full)
        rows = torch.gather(full, 1, (masked + 1)[..., None].expand(-1, -1, Dd))
        return self.pred(rows)  # [B, M, P]


def patchify(images, p):
    """[B, 3, H, W] -> [B, N, p*p*3] ordered (py, px, ch) as MAE's targets."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


class Medic(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        g = cfg["img"] // cfg["patch"]
        self.cfg = cfg
        self.student = Student(cfg["img"], cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"])
        self.head = nn.Linear(cfg["dim"], cfg["t_width"])
        self.decoder = Decoder(cfg["dim"], cfg["d_dim"], cfg["d_depth"], cfg["d_heads"], g, cfg["patch"] ** 2 * 3)
        self.teacher = ClipTeacher(cfg["img"], cfg["patch"], cfg["t_width"], cfg["t_layers"], cfg["t_heads"]).requires_grad_(False)

    def forward(self, images, visible, masked):
        with torch.no_grad():
            t_all = self.teacher(images)
            t = torch.cat([t_all[:, :1], torch.gather(t_all, 1, (visible + 1)[..., None].expand(-1, -1, t_all.shape[-1]))], 1)
            target = torch.gather(patchify(images, self.cfg["patch"]), 1, masked[..., None].expand(-1, -1, self.cfg["patch"] ** 2 * 3))
            mu = target.mean(-1, keepdim=True)
            target = (target - mu) / (target.var(-1, unbiased=True, keepdim=True) + 1e-6).sqrt()
        enc = self.student(images, visible)
        s = self.head(enc)
        pred = self.decoder(enc, visible, masked)
        s, t, pred = s.float(), t.float(), pred.float()
        l_tok = F.smooth_l1_loss(s[:, 1:], t[:, 1:], beta=1.0)
        cos = F.cosine_similarity(s[:, 0], t[:, 0], dim=-1).clamp(-1, 1)
        l_cls = ((1 - cos) / 0.1).mean()
        l_pix = F.mse_loss(pred, target.float())
        return l_tok + 0.4 * l_cls + l_pix, torch.stack([l_tok, l_cls, l_pix]).detach()


def optimizer_for(model, lr):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith("cls") or n.endswith("pos") or "mask_token" in n else decay).append(p)
    kw = {"fused": True} if torch.cuda.is_available() and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999), eps=1e-8, **kw)


def random_masks(B, N, M, device, gen):
    noise = torch.rand(B, N, generator=gen)
    order = noise.argsort(1)
    masked = order[:, :M].sort(1).values
    visible = order[:, M:].sort(1).values
    return visible.to(device), masked.to(device)


CLOCK = {"now": time.perf_counter}  # --clock cpu: time.process_time (this process's CPU time)


def time_steps(step_fn, warmup, steps, device):
    for _ in range(warmup):
        step_fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            step_fn()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
        else:
            t0 = CLOCK["now"]()
            step_fn()
            times.append((CLOCK["now"]() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times


def bench_step(cfg, batch, device, compiled, warmup, steps, amp):
    torch.manual_seed(0)
    model = Medic(cfg).to(device)
    model.train()
    model.teacher.eval()
    opt = optimizer_for(model, 1.5e-4)
    gen = torch.Generator().manual_seed(1)
    n = (cfg["img"] // cfg["patch"]) ** 2
    M = int(math.floor(n * cfg["mask_ratio"] + 1e-9))
    images = torch.randn(batch, 3, cfg["img"], cfg["img"], generator=gen).to(device)
    visible, masked = random_masks(batch, n, M, device, gen)
    fwd = torch.compile(model) if compiled else model
    last = {}

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss, parts = fwd(images, visible, masked)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        last["loss"], last["parts"], last["norm"] = loss, parts, norm

    t_compile = time.perf_counter()
    step()  # first step (compilation when compiled)
    if device.type == "cuda":
        torch.cuda.synchronize()
    first_s = time.perf_counter() - t_compile
    med, all_ms = time_steps(step, max(0, warmup - 1), steps, device)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in model.teacher.parameters())
    res = {
        "batch": batch,
        "compiled": compiled,
        "amp_bf16": amp,
        "first_step_s": round(first_s, 3),
        "step_ms_median": med,
        "step_ms": all_ms,
        "images_per_s": batch / (med / 1e3),
        "loss": float(last["loss"]),
        "losses_tok_cls_pix": [float(x) for x in last["parts"]],
        "grad_norm": float(last["norm"]),
        "trainable_params": n_train,
        "teacher_params": n_frozen,
        "tokens": {"student": 1 + n - M, "teacher": 1 + n, "masked": M},
    }
    if device.type == "cuda":
        res["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del model, opt, fwd
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return res


def bench_sdpa(batch, device, reps):
    """F.scaled_dot_product_attention in bf16 at our attention shapes; TFLOP/s with 4*B*H*T^2*Hd forward,
    2.5x that for the backward (the same counts bench/parity use)."""
    out = []
    for name, T, H, Hd in (("student (sparse)", 119, 12, 64), ("teacher", 197, 12, 64), ("decoder", 197, 16, 32)):
        q, k, v = (torch.randn(batch, H, T, Hd, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn(batch, H, T, Hd, device=device, dtype=torch.bfloat16)
        flops = 4.0 * batch * H * T * T * Hd

        def fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v)

        def fwd_bwd():
            o = F.scaled_dot_product_attention(q, k, v)
            o.backward(do)

        f_ms, _ = time_steps(fwd, 3, reps, device)
        fb_ms, _ = time_steps(fwd_bwd, 3, reps, device)
        out.append(
            {
                "case": name,
                "B": batch,
                "T": T,
                "H": H,
                "Hd": Hd,
                "fwd_ms": f_ms,
                "fwd_tflops": flops / (f_ms * 1e-3) / 1e12,
                "fwd_bwd_ms": fb_ms,
                "bwd_ms_est": fb_ms - f_ms,
                "fwd_bwd_tflops": 3.5 * flops / (fb_ms * 1e-3) / 1e12,
            }
        )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU, 2 steps (checks the script, not a benchmark)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-eager", action="store_true")
    ap.add_argument("--no-sdpa", action="store_true")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--precision", choices=["fp32", "bf16"], help="bf16 autocast or fp32 (default: bf16 on CUDA, fp32 on the CPU)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="CPU steps: wall time, or this process's CPU time (a shared machine; use with --threads 1)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (torch.set_num_threads; Debian's torch starts with 1); 0 = leave as is")
    a = ap.parse_args()

    if a.smoke:
        cfg = dict(img=32, patch=8, dim=64, depth=2, heads=2, t_width=64, t_layers=2, t_heads=2, d_dim=32, d_depth=1, d_heads=2, mask_ratio=0.4)
        device = torch.device("cpu")
        batch, steps, warmup = 2, 2, 1
    else:
        cfg = dict(img=224, patch=16, dim=768, depth=12, heads=12, t_width=768, t_layers=12, t_heads=12, d_dim=512, d_depth=8, d_heads=16, mask_ratio=0.4)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        batch, steps, warmup = a.batch, a.steps, a.warmup
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp = (a.precision or ("bf16" if device.type == "cuda" else "fp32")) == "bf16"
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.clock == "cpu":
        CLOCK["now"] = time.process_time
    res = {
        "tool": "pytorch_reference",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "config": cfg,
        "smoke": a.smoke,
        "precision": "bf16" if amp else "fp32",
        "threads": torch.get_num_threads(),
        "clock": a.clock,
        "step": {},
        "skipped": {},
    }
    modes = []
    if not a.no_eager:
        modes.append(("eager", False))
    if not a.no_compile:
        if HAS_COMPILE and not a.smoke:
            modes.append(("compile", True))
        else:
            res["skipped"]["compile"] = "torch.compile is not available in torch " + torch.__version__ if not HAS_COMPILE else "not run with --smoke"
    for name, compiled in modes:
        try:
            res["step"][name] = bench_step(cfg, batch, device, compiled, warmup, steps, amp)
            r = res["step"][name]
            print(f"[pytorch] {name}: {r['step_ms_median']:.1f} ms/step, {r['images_per_s']:.1f} images/s (batch {batch})", file=sys.stderr, flush=True)
        except Exception as e:  # keep the other measurements (e.g. compile failing on this image)
            res["step"][name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            print(f"[pytorch] {name}: failed: {e}", file=sys.stderr, flush=True)
    if a.no_sdpa:
        res["skipped"]["sdpa"] = "--no-sdpa"
    elif not HAS_SDPA:
        res["skipped"]["sdpa"] = "F.scaled_dot_product_attention is not available in torch " + torch.__version__
    elif device.type != "cuda":
        res["skipped"]["sdpa"] = "needs a GPU"
    else:
        try:
            res["sdpa"] = bench_sdpa(batch, device, max(5, steps))
        except Exception as e:
            res["sdpa_error"] = f"{type(e).__name__}: {e}"[:2000]
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/torchinductor_medic")
    main()
