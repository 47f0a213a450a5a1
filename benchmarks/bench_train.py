"""Speed of the full training loop against the bare model step, measured side by side in one run.

- **bare step**: what ``bench_bricks.py`` times as a training step, with this project's loss and
  optimiser: forward with dropout (masks from a torch.Generator), the per-step cross-entropy, backward
  and the original momentum rule (``BlocksMomentum``), on one batch already in memory.
- **training loop**: ``reproduce.training.loop.train`` on a generated feature file (the `alstm synth` layout)
  with the same sizes: every batch read from HDF5 by ``TrainWindows`` (random windows, flips; in the
  main process, or in ``--workers`` DataLoader workers), the same step, the learning-rate schedule, the
  finiteness check of the loss, a ``log.jsonl`` record at every update and the progress bar.
  Validation and checkpoints are left out (``validate_every=0``; one checkpoint at the end of each
  segment, after its timed updates). Seconds per update are read from the log records.

The two alternate in ``--segments`` segments (the run is resumed for each loop segment), so a machine
that gets busier or quieter affects both alike; per segment the ratio of median seconds per update
is taken, and the result is the median over segments. The first update of every loop segment (opening
the file, loading the checkpoint) is not timed. Target: the loop keeps >= 90% of the bare step's speed.

Sizes: the paper's (B = 200, N = T = 12, Dv = 4096 C3D fc6, Da = 1000 VGG fc8, H = M = 512) with
20 classes, or ``--quick`` (B = 32, Dv = 256, Da = 64, H = M = 64). On CUDA (``--device cuda``) both
run on the GPU in ``--precision`` (float32, tf32 or bfloat16 autocast; bench_bricks checks each
against float64), and the loop's batches are read on the CPU, pinned and copied. Usage:
``python benchmarks/bench_train.py [--quick] [--updates U] [--segments S] [--workers W]
[--device cpu|cuda] [--precision P]``; writes ``benchmarks/results/train.json`` (CPU) or
``benchmarks/results/cuda/train.json`` and prints a table. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from bricks import AttentionLSTM  # noqa: E402
from fuel_datasets.synthetic import SynthConfig, write_synthetic  # noqa: E402
from reproduce.training.config import TrainConfig  # noqa: E402
from reproduce.training.loop import train, window_loss  # noqa: E402
from reproduce.training.optim import BlocksMomentum  # noqa: E402

TARGET_FRACTION = 0.90


class BareStep:
    """The model step alone, on one batch held in memory (what bench_bricks times)."""

    def __init__(self, sizes: dict, seed: int, device: str | torch.device = "cpu"):
        device = torch.device(device)
        B, N, T, Dv, Da, H, M, C = (sizes[k] for k in ("B", "N", "T", "Dv", "Da", "H", "M", "C"))
        generator = torch.Generator().manual_seed(seed)
        model = AttentionLSTM(Dv, Da, C, hidden_dim=H, match_dim=M, generator=generator)
        self.model = model.to(device).train()
        self.inputs = torch.randn(B, N, Dv, generator=generator).to(device)
        self.attended = torch.randn(B, T, Da, generator=generator).to(device)
        self.mask = torch.ones(B, T, dtype=torch.bool, device=device)
        self.targets = torch.randint(0, C, (B,), generator=generator).to(device)
        self.optimizer = BlocksMomentum(self.model.parameters(), lr=0.01, momentum=0.9)
        self.dropout = torch.Generator(device=device).manual_seed(seed + 1)
        self.step()                                                                  # warm-up

    def step(self) -> None:
        out = self.model(self.inputs, self.attended, self.mask, generator=self.dropout)
        loss = window_loss(out.step_logits, self.targets, False).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def seconds(self, steps: int) -> list[float]:
        return [_common.time_call(self.step) for _ in range(steps)]


def loop_seconds(config: TrainConfig, out_dir: Path, resume: bool, device: torch.device) -> list[float]:
    """Run `train` up to ``config.iterations`` (continuing the run in ``out_dir`` if ``resume``) and return
    the seconds of each update after the segment's first, read from its log.jsonl records."""
    done = 0
    log = out_dir / "log.jsonl"
    if resume:
        done = max(json.loads(line)["iteration"] for line in log.read_text().splitlines())
    train(config, str(out_dir), resume=resume, device=str(device), checkpoint_every=10**9, log_every=1,
          progress=True)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    mine = [r for r in records if r["kind"] == "train" and r["iteration"] > done]
    return [r["elapsed_s"] for r in mine[1:]]  # the first update includes opening the file and workers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--updates", type=int, default=None,
                        help="timed updates per segment (default 4, quick 10; with fewer, one slow step "
                             "decides a segment)")
    parser.add_argument("--segments", type=int, default=6, help="alternations of loop and bare step")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; quick: 1, as tiny matrices "
                             "gain nothing from more and suffer most from a busy machine)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the loop (default 0)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="float32", choices=_common.PRECISIONS,
                        help="CUDA only: float32 (TF32 off), tf32, or bfloat16 autocast (default float32)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/train.json, or results/cuda/train.json)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device, problem = _common.cuda_or_message(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if device.type == "cpu" and args.precision != "float32":
        parser.error("--precision: the CPU runs float32 only")
    out = args.out or _common.results_path("train", device)
    if args.quick:
        sizes = dict(B=32, N=12, T=12, Dv=256, Da=64, H=64, M=64, C=20)
        dims = dict(c3d_fc6_dim=256, vgg_obj_fc8_dim=64, num_videos=120)
        updates = args.updates or 10
    else:
        sizes = dict(B=200, N=12, T=12, Dv=4096, Da=1000, H=512, M=512, C=20)
        dims = dict(c3d_fc6_dim=4096, vgg_obj_fc8_dim=1000, num_videos=250)
        updates = args.updates or 4
    synth = SynthConfig(num_classes=sizes["C"], vgg_fc6_dim=32, c3d_fc8_dim=sizes["C"], vgg_sce_fc8_dim=16,
                        vgg_act_fc8_dim=16, seed=args.seed, **dims)

    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    bare, loop = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data, run = Path(tmp) / "synth.h5", Path(tmp) / "run"
        print(f"generating {data} ...", file=sys.stderr, flush=True)
        write_synthetic(data, synth)
        with _common.precision_mode(device, args.precision):
            bare_step = BareStep(sizes, args.seed, device)
        for segment in range(args.segments):
            print(f"segment {segment + 1}/{args.segments}: loop, then bare step ...", file=sys.stderr,
                  flush=True)
            config = TrainConfig(data=str(data), input_source="c3d_fc6", attended_source="vgg_obj_fc8",
                                 hidden_dim=sizes["H"], match_dim=sizes["M"], frames=16 * sizes["N"],
                                 steps=sizes["N"], batch_size=sizes["B"],
                                 iterations=(segment + 1) * (updates + 1), validate_every=0,
                                 num_workers=args.workers, seed=args.seed)
            with _common.precision_mode(device, args.precision):
                loop.append(loop_seconds(config, run, resume=segment > 0, device=device))
                bare.append(bare_step.seconds(updates))

    ratios = [_common.median(b) / _common.median(lo) for b, lo in zip(bare, loop, strict=True)]
    bare_speed = 1.0 / _common.median([t for b in bare for t in b])
    loop_speed = 1.0 / _common.median([t for lo in loop for t in lo])
    fraction = _common.median(ratios)
    payload = {
        "benchmark": "train",
        "quick": args.quick,
        "machine": _common.machine_description(),
        "device": _common.device_name(device),
        "precision": args.precision,
        "sizes": sizes,
        "num_workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "segments": args.segments,
        "updates_per_segment": updates,
        "bare_updates_per_s": bare_speed,
        "loop_updates_per_s": loop_speed,
        "loop_fraction_of_bare_per_segment": ratios,
        "loop_fraction_of_bare": fraction,
        "targets": {"loop_fraction_min": TARGET_FRACTION, "met": fraction >= TARGET_FRACTION},
        "bare_step_s": bare,
        "loop_update_s": loop,
        "note": "segments alternate the training loop (resumed each time) and the bare step; each segment's "
                "ratio of median seconds per update, then the median over segments; the loop's first "
                "update of a segment (start-up) is not timed; shared machine, noisy",
        "peak_rss": _common.peak_rss(),
        "peak_gpu_memory_mb": _common.peak_gpu_memory_mb(device),
    }
    _common.write_json(out, payload)
    print(_common.format_table(
        [{"what": "bare step", "speed": bare_speed, "s": 1 / bare_speed},
         {"what": "training loop", "speed": loop_speed, "s": 1 / loop_speed}],
        [("what", "", "s"), ("speed", "updates/s", ".3f"), ("s", "s/update", ".3f")]))
    print(f"loop keeps {fraction:.1%} of the bare step's speed (median over {args.segments} segments; "
          f"target >= {TARGET_FRACTION:.0%}): {'met' if fraction >= TARGET_FRACTION else 'NOT met'}; "
          f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
