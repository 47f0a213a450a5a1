"""Speed of AttentionLSTM at the paper's configuration: one training step and one inference pass.

Configuration (docs/paper.md §1–3): B = 200 windows, N = T = 12, Dv = 4096 (C3D fc6), Da = 1000 (VGG fc8)
and 4096 (VGG fc6), H = M = 512, C = 203, float32, variant (a), dropout 0.5, on the CPU.
A training step is forward + backward + an SGD-momentum update; the inference pass is an eval-mode
forward without autograd.

FLOPs are counted analytically from the matrix products (2·m·n·k each; element-wise work such as
tanh, sigmoid and dropout is not counted), with R = B·N rows:

    forward  = 2R·Dv·Dv                   input MLP (paper §4.1)
             + 2R·Dv·4H                   input-to-gates W v'_t + b
             + 2B·T·Da·M                  preprocess U_a a_i + b_a (once per window)
             + 2B·T·Da·4H                 distribute D a_i (once per window, since T ≤ N)
             + N·(2B·H·4H                 U h_{t-1}
                  + 2B·H·M                W_h h_{t-1}
                  + 2B·T·M                w^T e_{t,i}
                  + 2B·T·4H)              Σ_i w_{t,i} D a_i
             + 2R·H·C                     classifier, Eq. 13
    backward = one weight-gradient product per forward product, plus one input-gradient product
               wherever the input needs a gradient (every product except those reading the data:
               the input MLP, the preprocess and the distribute), i.e.
             = 1·(MLP + preprocess + distribute) + 2·(all the others)
    step     = forward + backward              (the SGD update is element-wise: not counted)

At the paper's sizes a step is ≈330 GFLOP (Da = 1000) or ≈400 GFLOP (Da = 4096), mostly in the
Dv×Dv input MLP and the Dv×4H input projection, so it is matmul bound. The script measures this
machine's float32 peak with a large square torch.mm, interleaved with the steps so that a busy machine
slows both alike, and reports the step's achieved GFLOP/s as a fraction of that peak (target ≥ 0.80).

The reference point is a straightforward implementation (``naive_forward`` below) that follows the
equations step by step: it applies the input MLP and projections per step, recomputes U_a a_i at every
step, and uses torch's own dropout. The ratio naive/ours is reported for both passes.

On CUDA (``--device cuda``) the same passes run in each of ``--precisions``: ``float32`` (TF32 off),
``tf32`` (float32 tensors, TF32 matrix units) and ``bfloat16`` autocast, each against the peak of its
own kind of product (a float32, TF32 or bfloat16 square torch.mm), and each checked against a float64
run of the same model (relative error of the video scores and of the gradient, eval mode so that no
dropout mask differs); a precision is *usable* when both errors stay within ``PRECISION_TOLERANCE``.
The ≥ 0.80 target is the CPU's; on a GPU the fraction is reported for comparison only (B = 200 windows
of 12 steps leave much of a large GPU idle in the recurrent part).

On the CPU the passes run in float32 and in bfloat16 autocast (weights, gradients and the update in
float32, as `alstm train --precision bfloat16`), the bfloat16 rows against a bfloat16 square torch.mm
and checked against float64 like the CUDA ones. Target on a CPU that multiplies bfloat16 natively
(AVX512-BF16 or AMX, `reproduce.runtime.precision.native_bfloat16`): the bfloat16 training step at least
``TARGET_BF16_SPEEDUP`` times as fast as float32's, timed interleaved with it (inside the float32
configuration, so that a busy machine slows both alike); n/a on other CPUs.

Usage: ``python benchmarks/bench_bricks.py [--quick] [--repeats R] [--device cpu|cuda]
[--precisions float32,tf32,bfloat16]``; writes ``benchmarks/results/bricks.json`` (CPU) or
``benchmarks/results/cuda/bricks.json`` and prints a table. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from bricks import AttentionLSTM  # noqa: E402

TARGET_PEAK_FRACTION = 0.80
TARGET_BF16_SPEEDUP = 1.8          # CPU bfloat16 training step vs float32, where bfloat16 is native
# Largest relative error (scores and gradient, against float64) for a reduced precision to count as
# keeping the results of float32: about what TF32's 10-bit mantissa gives over these products.
PRECISION_TOLERANCE = 1e-2


def forward_flops(B, N, T, Dv, Da, H, M, C) -> tuple[float, float]:
    """(forward FLOPs, backward FLOPs) of variant (a) as implemented (T ≤ N), per the module docstring."""
    R, G = B * N, 4 * H
    data_products = 2 * R * Dv * Dv + 2 * B * T * Da * M + 2 * B * T * Da * G
    other_products = 2 * R * Dv * G + N * (2 * B * H * G + 2 * B * H * M + 2 * B * T * M + 2 * B * T * G) \
        + 2 * R * H * C
    return data_products + other_products, data_products + 2 * other_products


def naive_forward(model: AttentionLSTM, inputs, attended, mask):
    """The equations of docs/paper.md §2 written step by step with the model's weights (variant (a), default
    mode): per-step input MLP and projections, U_a a_i recomputed at every step, F.dropout."""
    p, training = model.input_dropout.p, model.training
    lstm, att = model.lstm, model.attention
    B, N, _ = inputs.shape
    H = lstm.hidden_dim
    h = inputs.new_zeros(B, H)
    c = inputs.new_zeros(B, H)
    probabilities = []
    for t in range(N):
        v = F.dropout(inputs[:, t], p, training)
        v = torch.sigmoid(F.linear(v, model.input_mlp.weight, model.input_mlp.bias))
        v = F.dropout(v, p, training)
        pre = F.linear(attended, att.preprocessor.weight, att.preprocessor.bias)            # every step
        e = torch.tanh(pre + F.linear(h, att.transform_states.weight)[:, None])
        m = F.linear(e, att.energy_computer.weight).squeeze(-1).masked_fill(~mask, float("-inf"))
        w = torch.softmax(m, dim=-1)
        k = (w[..., None] * attended).sum(1)
        gates = (F.linear(v, lstm.input_to_gates.weight, lstm.input_to_gates.bias)
                 + F.linear(k, lstm.distribute.weight) + F.linear(h, lstm.state_to_gates.weight))
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        y = F.linear(F.dropout(h, p, training), model.classifier.weight, model.classifier.bias)
        probabilities.append(torch.softmax(y, dim=-1))
    return torch.stack(probabilities, 1).mean(1)


def precision_errors(model: AttentionLSTM, inputs, attended, mask, targets, precision: str) -> dict:
    """Relative errors of the video scores and of the loss gradient in ``precision`` against float64
    on the same device, in eval mode (no dropout), with this benchmark's loss."""
    reference = copy.deepcopy(model).double().eval()
    model.eval()

    def scores_and_gradient(net, cast, context):
        net.zero_grad(set_to_none=True)
        with context:
            scores = net(cast(inputs), cast(attended), mask).scores
            loss = F.nll_loss(torch.log(scores.double()), targets)
        loss.backward()
        gradient = torch.cat([p.grad.reshape(-1).double() for p in net.parameters()])
        net.zero_grad(set_to_none=True)
        return scores.detach(), gradient

    ref_scores, ref_gradient = scores_and_gradient(reference, lambda x: x.double(), contextlib.nullcontext())
    scores, gradient = scores_and_gradient(model, lambda x: x,
                                           _common.precision_mode(inputs.device, precision))
    errors = {"scores_relative_error": _common.relative_error(scores, ref_scores),
              "gradient_relative_error": _common.relative_error(gradient, ref_gradient)}
    errors["usable"] = max(errors.values()) <= PRECISION_TOLERANCE
    return errors


def run_config(sizes: dict, repeats: int, peak_operands, seed: int, device: torch.device,
               precision: str = "float32", beside: str | None = None) -> dict:
    """One configuration in ``precision``; with ``beside`` (e.g. "bfloat16"), its training step is timed
    too, interleaved with this precision's (``train_beside_s``, ``beside_speedup``): a side-by-side ratio
    that a busy machine slows alike."""
    B, N, T, Dv, Da, H, M, C = (sizes[k] for k in ("B", "N", "T", "Dv", "Da", "H", "M", "C"))
    generator = torch.Generator().manual_seed(seed)
    model = AttentionLSTM(Dv, Da, C, hidden_dim=H, match_dim=M, generator=generator).to(device)
    inputs = torch.randn(B, N, Dv, generator=generator).to(device)
    attended = torch.randn(B, T, Da, generator=generator).to(device)
    mask = torch.ones(B, T, dtype=torch.bool, device=device)
    targets = torch.randint(0, C, (B,), generator=generator).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    dropout_generator = torch.Generator(device=device).manual_seed(seed + 1)
    mode = lambda: _common.precision_mode(device, precision)  # noqa: E731

    def train_step(forward):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with mode():
            scores = forward()
            loss = F.nll_loss(torch.log(scores.float()), targets)
        loss.backward()
        optimizer.step()

    def ours_train():
        train_step(lambda: model(inputs, attended, mask, generator=dropout_generator).scores)

    def naive_train():
        train_step(lambda: naive_forward(model, inputs, attended, mask))

    def ours_infer():
        model.eval()
        with torch.inference_mode(), mode():
            model(inputs, attended, mask)

    def naive_infer():
        model.eval()
        with torch.inference_mode(), mode():
            naive_forward(model, inputs, attended, mask)

    errors = precision_errors(model, inputs, attended, mask, targets, precision) \
        if device.type == "cuda" or precision != "float32" else None
    model.eval()
    with torch.inference_mode():
        ours = model(inputs, attended, mask).scores
        agreement = float((ours - naive_forward(model, inputs, attended, mask)).abs().max())
    passes = dict(train=ours_train, train_naive=naive_train, infer=ours_infer, infer_naive=naive_infer)
    if beside is not None:
        def beside_train():
            with _common.precision_mode(device, beside):
                ours_train()
        passes["train_beside"] = beside_train
    for fn in passes.values():                                                 # warm-up
        fn()
    times = {name: [] for name in passes}
    peaks = []
    peak_out = torch.empty_like(peak_operands[0])
    for _ in range(repeats):
        for name, fn in passes.items():
            with mode():
                peaks.append(_common.matmul_peak_seconds(peak_operands, peak_out))
            times[name].append(_common.time_call(fn))
    peak_flops = _common.matmul_flops(peak_operands[0].shape[0])
    peak_gflops = peak_flops / _common.median(peaks) / 1e9
    fwd, bwd = forward_flops(B, N, T, Dv, Da, H, M, C)
    step_s, infer_s = _common.median(times["train"]), _common.median(times["infer"])
    return {
        "sizes": sizes,
        "device": str(device),
        "precision": precision,
        "precision_check": errors,
        "step_gflop": (fwd + bwd) / 1e9,
        "inference_gflop": fwd / 1e9,
        "peak_gflops": peak_gflops,
        "train_step_s": step_s,
        "train_gflops": (fwd + bwd) / step_s / 1e9,
        "train_peak_fraction": (fwd + bwd) / step_s / 1e9 / peak_gflops,
        # Best-of-repetitions ratio: on a busy machine the fastest step and the fastest peak matmul
        # are the least disturbed samples of each.
        "train_peak_fraction_best": (fwd + bwd) / min(times["train"]) / (peak_flops / min(peaks)),
        "train_naive_s": _common.median(times["train_naive"]),
        "train_speedup_vs_naive": _common.median(times["train_naive"]) / step_s,
        "inference_s": infer_s,
        "inference_gflops": fwd / infer_s / 1e9,
        "inference_peak_fraction": fwd / infer_s / 1e9 / peak_gflops,
        "inference_naive_s": _common.median(times["infer_naive"]),
        "inference_speedup_vs_naive": _common.median(times["infer_naive"]) / infer_s,
        "naive_max_abs_score_difference": agreement,
        "beside": beside,
        "train_beside_s": _common.median(times["train_beside"]) if beside else None,
        "beside_speedup": step_s / _common.median(times["train_beside"]) if beside else None,
        "all_times_s": times,
        "all_peak_times_s": peaks,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repetitions (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions per pass (default 5 on the CPU, 20 on CUDA; quick 2)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precisions", default=None,
                        help="comma-separated among float32, tf32 (CUDA), bfloat16 (default: all the device "
                        "has: CUDA float32,tf32,bfloat16; CPU float32,bfloat16)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/bricks.json, or results/cuda/bricks.json)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device, problem = _common.cuda_or_message(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    default = _common.PRECISIONS if device.type == "cuda" else ("float32", "bfloat16")
    precisions = args.precisions.split(",") if args.precisions else list(default)
    unknown = sorted(set(precisions) - set(_common.PRECISIONS))
    if unknown:
        parser.error(f"--precisions: unknown {', '.join(unknown)}; "
                     f"choose among {', '.join(_common.PRECISIONS)}")
    out = args.out or _common.results_path("bricks", device)
    repeats = args.repeats or (2 if args.quick else 20 if device.type == "cuda" else 5)
    if args.quick:
        base, attended_dims = dict(B=32, N=12, T=12, Dv=1024, H=256, M=256, C=203), (256, 1024)
        peak_size = 2048
    else:
        base, attended_dims = dict(B=200, N=12, T=12, Dv=4096, H=512, M=512, C=203), (1000, 4096)
        peak_size = 4096 if device.type == "cpu" else 8192

    load_at_start = os.getloadavg()
    results = []
    for precision in precisions:
        peak_operands = _common.peak_operands_for(precision, peak_size, args.seed, device)
        for Da in attended_dims:
            sizes = dict(base, Da=Da)
            print(f"measuring {device.type} {precision} Da={Da} ...", file=sys.stderr, flush=True)
            beside = "bfloat16" if device.type == "cpu" and precision == "float32" \
                and "bfloat16" in precisions else None
            results.append(run_config(sizes, repeats, peak_operands, args.seed, device, precision, beside))
        del peak_operands
    from reproduce.runtime.precision import native_bfloat16

    native = native_bfloat16()
    # the ratio timed side by side, inside the float32 run (the bfloat16 run's own step is reported too)
    side_by_side = {r["sizes"]["Da"]: r["beside_speedup"] for r in results if r.get("beside_speedup")}
    for r in results:
        if r["precision"] == "bfloat16" and r["sizes"]["Da"] in side_by_side:
            r["speedup_vs_float32"] = side_by_side[r["sizes"]["Da"]]
            r["speedup_met"] = r["speedup_vs_float32"] >= TARGET_BF16_SPEEDUP \
                if device.type == "cpu" and native else None
    met = all(r["train_peak_fraction"] >= TARGET_PEAK_FRACTION for r in results
              if r["precision"] == "float32") if device.type == "cpu" else None
    bf16_met = [r["speedup_met"] for r in results if r.get("speedup_met") is not None]
    payload = {
        "benchmark": "bricks",
        "quick": args.quick,
        "machine": _common.machine_description(),
        "device": _common.device_name(device),
        "dtype": "per config: precision",
        "repeats": repeats,
        "peak_matmul_size": peak_size,
        "flop_count": "analytic matmul FLOPs, see benchmarks/bench_bricks.py docstring",
        "targets": {"train_peak_fraction_min": TARGET_PEAK_FRACTION, "met": met,
                    "precision_tolerance": PRECISION_TOLERANCE,
                    "cpu_bfloat16_speedup_min": TARGET_BF16_SPEEDUP,
                    "cpu_bfloat16_met": all(bf16_met) if bf16_met else None,
                    "native_bfloat16": native},
        "note": "medians over interleaved repetitions on a shared machine (noisy); the target is judged on "
                "the median step against the median peak, on the CPU only",
        "load_average_1_5_15_min": {"start": load_at_start, "end": os.getloadavg()},
        "configs": results,
        "peak_rss": _common.peak_rss(),
        "peak_gpu_memory_mb": _common.peak_gpu_memory_mb(device),
    }
    _common.write_json(out, payload)

    rows = [dict(r, Da=r["sizes"]["Da"], **(r["precision_check"] or {})) for r in results]
    print(_common.format_table(rows, [
        ("precision", "precision", "s"), ("Da", "Da", "d"), ("step_gflop", "GFLOP/step", ".1f"),
        ("train_step_s", "step s", ".4f"), ("train_gflops", "GFLOP/s", ".1f"), ("peak_gflops", "peak", ".1f"),
        ("train_peak_fraction", "of peak", ".2f"), ("train_peak_fraction_best", "best/best", ".2f"),
        ("train_speedup_vs_naive", "vs naive", ".2f"),
        ("inference_s", "infer s", ".4f"), ("inference_peak_fraction", "infer of peak", ".2f"),
        ("inference_speedup_vs_naive", "infer vs naive", ".2f"),
        ("scores_relative_error", "score err", ".1e"), ("gradient_relative_error", "grad err", ".1e"),
        ("speedup_vs_float32", "vs float32", ".2f"),
    ]))
    verdict = "n/a on CUDA" if met is None else "met" if met else "NOT met"
    bf16 = payload["targets"]["cpu_bfloat16_met"]
    bf16_verdict = ("n/a (no native bfloat16, or not measured)" if bf16 is None
                    else "met" if bf16 else "NOT met")
    print(f"target: float32 training step >= {TARGET_PEAK_FRACTION:.0%} of measured matmul peak: {verdict}; "
          f"CPU bfloat16 step >= {TARGET_BF16_SPEEDUP}x float32: {bf16_verdict}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
