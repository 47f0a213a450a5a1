"""Speed of fine-tuning (`alstm finetune c3d | vgg`): the networks' updates, the data pipeline, and both.

Workload: one generated H.264 (yuv420p) video of --frames frames at --size (default 320×240, the common
ActivityNet size) listed --clips times as training samples; **full-size** C3D and VGG-19 (random
"pre-trained" weights written to a temporary .caffemodel, their first convolution scaled so that
activations are of order 1 as with trained weights: random weights on 0–255 input saturate the softmax,
and its denormal gradients slow float32 updates about 8× on a CPU), at
batch --c3d-batch (default 4) and --vgg-batch (default 8), smaller than the examples' 30 and 50 so that
an update fits a few seconds on two cores. Rows per network and precision (float32, and bfloat16
autocast on the CPU / float16 on CUDA, as ``--precision``):

    update      clips (C3D) or images (VGG) per second of whole updates on a batch held in memory (the
                data layer's first batch): forward with dropout, SOFTMAX_LOSS, backward, CaffeSGD step
                (C3D's solver semantics for C3D, BVLC's for VGG-19, as the commands)
    data        clips or images per second of the data layer alone (VIDEO_DATA / ImageData: decoding,
                resizing, crop, mean, mirror) in --workers DataLoader processes, no network
    pipeline    clips or images per second of `finetune_c3d` / `finetune_vgg` themselves over
                --iterations updates after a first one (data workers ∥ the network, as the command runs;
                timed from the end of the first update to the end of the last, by its callback)
    data/update the data pipeline's speed as a share of the network's: ≥ 1 means the data keeps up

Target: pipeline ≥ 0.9 × min(update, data) (the slower stage kept busy). Each of the three runs in a
fresh process of its own, as the command does (one that measured the others first runs the command up
to 15 % slower: the memory they left behind); ``<stage>_peak_rss_mb`` is that process's peak RSS.

Compute efficiency, per network and precision: the training pass of an update (`TrainingNet` forward
with dropout, SOFTMAX_LOSS, backward; the network and its input in channels_last_3d (C3D) or
channels_last (VGG-19) as `run_job` puts them) in GFLOP/s, its FLOPs counted by torch's
FlopCounterMode over one update (convolutions and matrix products of forward and backward), its time the
median of the timed updates (the CaffeSGD step, elementwise and not counted, timed apart); as a fraction
of this precision's matmul peak (a square torch.mm of float32 or bfloat16 operands,
`_common.matmul_peak_seconds`, measured between the timed updates so that the machine's load hits both
alike). Target: ≥ ``TARGET_PEAK_FRACTION``.

Tensor layout (``layout`` in the JSON), for C3D and VGG-19 alike: the fine-tuning training pass (forward
+ backward, at the update's batch) and the extraction forward (fc6 in eval mode as `FeatureExtractor`
runs it, on --extract-clips clips (`alstm extract`'s batch) and their flips; VGG-19 on the two attended
frames of each clip and their flips) with the model and input in
torch.contiguous_format and in channels_last (channels_last_3d for C3D's 5-D blobs), float32 and the low
precision, the two layouts run in turn (interleaved, alternating which goes first) --repeats times after
a warm-up each. ``speedup`` = contiguous seconds / channels_last seconds. Both layouts' outputs (fc8
scores and the first convolution's weight gradient; fc6 features) are compared with the same pass in
float64: channels_last is "as accurate" when its error is at most ``LAYOUT_ERROR_RATIO`` × contiguous's
(the two only sum in another order). A path should take channels_last, in every precision, if it is as
accurate and nowhere more than ``LAYOUT_NOISE`` slower (where it is faster it is 1.1–2× faster: one
layout per path keeps the code simple), contiguous otherwise; ``layout.decision`` says which, why, and
what the code uses now. The tables print the figures.

Usage: ``python benchmarks/bench_finetune.py [--quick] [--device cpu|cuda]``; writes
``benchmarks/results/finetune.json`` (``results/cuda/finetune.json`` on CUDA) and
prints a table. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_extract import write_test_video  # noqa: E402
from PIL import Image  # noqa: E402

from caffe_models import C3D, VGG19, RandomWeightsWarning, VideoReader, load_mean  # noqa: E402
from caffe_models.preprocess import C3D_MEAN_BGR, preprocess_c3d, preprocess_vgg  # noqa: E402
from caffe_models.writer import save_caffemodel, save_mean  # noqa: E402
from reproduce.finetuning.c3d import finetune_c3d, finetune_network  # noqa: E402
from reproduce.finetuning.clips import image_samples, list_samples  # noqa: E402
from reproduce.finetuning.run import TrainingNet, fast_layout, to_fast_layout  # noqa: E402
from reproduce.finetuning.solver import CaffeSGD, SolverSettings, caffe_param_groups  # noqa: E402
from reproduce.finetuning.vgg import ImageDataLayer, finetune_vgg, vgg_network  # noqa: E402
from reproduce.finetuning.video_data import TrainBatches, VideoDataLayer, batch_loader  # noqa: E402
from reproduce.runtime.precision import autocast  # noqa: E402

TARGET_PIPELINE_FRACTION = 0.9
TARGET_PEAK_FRACTION = 0.7        # training pass GFLOP/s / this precision's matmul peak
LAYOUT_NOISE = 0.10               # channels_last is kept unless more than 10 % slower (or less accurate)
# channels_last is "as accurate" when each output's error against the float64 pass is at most this many
# times contiguous's, or below the floor: another summation order, either may be the closer; the first
# convolution's weight gradient sums 10⁵–10⁶ terms of both signs, and its float32 error against float64
# moves by a factor 2–3 with the order alone
LAYOUT_ERROR_RATIO = 3.0
LAYOUT_ERROR_FLOOR = 1e-5
PEAK_SIZE = {"cpu": 2048, "cuda": 8192}   # the square matmul of the peak (bench_extract's 2048 on CPUs)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_sampler(precision: str, device: torch.device):
    """A function giving one sample of this precision's matmul peak in GFLOP/s (bench_extract's measure:
    one square torch.mm of float32, or of bfloat16 / float16 operands for that autocast), warmed up."""
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(precision, torch.float32)
    size = PEAK_SIZE[device.type]
    operands = _common.matmul_peak_operands(size, dtype, 0, device)
    out = torch.empty_like(operands[0])
    _common.matmul_peak_seconds(operands, out)                                  # warm-up
    return lambda: _common.matmul_flops(size) / _common.matmul_peak_seconds(operands, out) / 1e9


def update_rate(net, batch, labels, precision, device, repeats, semantics) -> dict:
    """Whole updates (forward, loss, backward, step with the command's solver ``semantics``) on one batch
    in memory: items per second, and the training pass's GFLOP/s as a fraction of the matmul peak
    sampled between the timed updates."""
    from torch.utils.flop_counter import FlopCounterMode

    net = net.to(device)
    net = to_fast_layout(net)                                 # as run_job
    model = TrainingNet(net).train()
    optimizer = CaffeSGD(caffe_param_groups(net), SolverSettings(base_lr=1e-6, semantics=semantics))
    generator = torch.Generator(device=device).manual_seed(0)
    batch, labels = batch.to(device), labels.to(device)

    def step() -> tuple[float, float]:
        """Seconds of the training pass (zero_grad, forward, loss, backward) and of the whole update."""
        sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision, device):
            scores = model(batch, generator)
        loss = torch.nn.functional.cross_entropy(scores.float(), labels)
        loss.backward()
        sync(device)
        passed = time.perf_counter()
        optimizer.step()
        sync(device)
        return passed - start, time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        step()                                                # warm-up (oneDNN / cuDNN plans), counted
    flops = counter.get_total_flops()
    peak = peak_sampler(precision, device)
    passes, updates, peaks = [], [], []
    for _ in range(repeats):                                  # interleaved: update, peak, update, …
        pass_s, update_s = step()
        passes.append(pass_s)
        updates.append(update_s)
        peaks.append(peak())
    pass_s, peak_gflops = _common.median(passes), _common.median(peaks)
    gflops = flops / pass_s / 1e9
    return {"update": len(batch) / _common.median(updates), "train_pass_s": pass_s,
            "update_s": _common.median(updates), "gflop_per_update": flops / 1e9, "train_gflops": gflops,
            "peak_gflops": peak_gflops, "train_peak_fraction": gflops / peak_gflops,
            "update_peak_fraction": flops / _common.median(updates) / 1e9 / peak_gflops,
            "peak_target_met": gflops / peak_gflops >= TARGET_PEAK_FRACTION}


def data_rate(samples, layer, batch_size, workers, batches) -> float:
    """Items per second of the data layer alone, in ``workers`` DataLoader processes."""
    data = TrainBatches(samples.train, layer, batch_size=batch_size, seed=0)
    stream = batch_loader(data, range(batches + 1), workers=workers, read_ahead=2)
    next(stream)                                              # worker start-up excluded
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch_size / (time.perf_counter() - start)


def pipeline_rate(run, iterations, batch_size) -> float:
    """Items per second of the fine-tuning command itself, between the end of its first update and the end
    of its last (start-up, the first update's kernel choices and the final snapshot left out)."""
    stamps = []
    run(1 + iterations, lambda k: stamps.append(time.perf_counter()))
    return iterations * batch_size / (stamps[-1] - stamps[0])


def measure_part(part: str, spec: dict) -> dict:
    """One stage of `measure` (``update``, ``data`` or ``pipeline``) for ``spec`` (network, precision,
    device, batch, workers, repeats, data_batches, iterations and prepare()'s file paths)."""
    network, precision, batch = spec["network"], spec["precision"], spec["batch"]
    device = torch.device(spec["device"])
    files = {key: Path(value) for key, value in spec["files"].items()}
    if network == "c3d":
        samples = list_samples(files["clips"], num_classes=2)
        layer = VideoDataLayer(load_mean(files["mean_file"]).reshape(3, 16, 128, 171))
    else:
        samples = image_samples(files["images"], num_classes=2)
        layer = ImageDataLayer()
    if part == "update":
        net = finetune_network(files["c3d"], 2) if network == "c3d" else vgg_network(files["vgg"], 2)
        items, labels, _ = TrainBatches(samples.train, layer, batch_size=batch, seed=0)[0]  # the command's
        semantics = "c3d" if network == "c3d" else "bvlc"
        return update_rate(net, items, labels, precision, device, spec["repeats"], semantics)
    if part == "data":
        return {"data": data_rate(samples, layer, batch, spec["workers"], spec["data_batches"])}

    def run(iterations: int, callback) -> None:
        out = files["folder"] / f"{network}_{precision}"
        options = dict(batch_size=batch, device=device, precision=precision, workers=spec["workers"],
                       num_classes=2, callback=callback)
        if network == "c3d":
            settings = SolverSettings(base_lr=1e-6, max_iter=iterations, snapshot=0)
            finetune_c3d(out, weights=files["c3d"], mean=files["mean_file"], list_file=files["clips"],
                         solver=settings, **options)
        else:
            settings = SolverSettings(base_lr=1e-6, max_iter=iterations, snapshot=0, semantics="bvlc")
            finetune_vgg(out, weights=files["vgg"], images=files["images"], solver=settings, **options)
    return {"pipeline": pipeline_rate(run, spec["iterations"], batch)}


def measure(network: str, files: dict, precision: str, device: torch.device, args) -> dict:
    """The update, the data layer and the command, each in a fresh process of its own (as `alstm
    finetune` runs: a process that measured the others first runs the command up to 15 % slower)."""
    batch = args.c3d_batch if network == "c3d" else args.vgg_batch
    spec = {"network": network, "precision": precision, "device": str(device), "batch": batch,
            "workers": args.workers, "repeats": args.repeats, "data_batches": args.data_batches,
            "iterations": args.iterations,
            "files": {key: str(files[key])
                      for key in ("folder", "clips", "images", "mean_file", "c3d", "vgg")}}
    parts = {}
    for part in ("update", "data", "pipeline"):
        done = subprocess.run([sys.executable, __file__, "--part", part, json.dumps(spec)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{network} {precision} {part} failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result[f"{part}_peak_rss_mb"] = result.pop("peak_rss_mb")
        parts |= result
    update, data, pipeline = parts["update"], parts["data"], parts["pipeline"]
    return {"network": network, "device": str(device), "precision": precision, "batch": batch,
            **parts,
            "data_vs_update": data / update, "pipeline_vs_bound": pipeline / min(update, data)}


def interleaved_seconds(runs: dict, repeats: int, device: torch.device) -> tuple[dict, dict]:
    """One warm-up call of each run (its output kept), then ``repeats`` rounds calling them in turn, the
    order reversed every other round; returns ({name: median seconds}, {name: warm-up output})."""
    outputs = {name: fn() for name, fn in runs.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            start = time.perf_counter()
            runs[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: _common.median(t) for name, t in times.items()}, outputs


def errors_against(reference: dict, outputs: dict) -> dict:
    """Per output: ‖x − float64‖ / ‖float64‖ for each layout's x."""
    return {key: {layout: _common.relative_error(out[key].detach().double().cpu(), reference[key])
                  for layout, out in outputs.items()} for key in reference}


def layout_row(path: str, precision: str, batch: int, seconds: dict, outputs: dict, reference: dict) -> dict:
    """Speed-up of channels_last over contiguous, and whether its outputs are as accurate: for every output,
    its error against the float64 pass at most ``LAYOUT_ERROR_RATIO`` × contiguous's (or within
    ``LAYOUT_ERROR_FLOOR``, where both are float32-exact)."""
    contiguous, last = seconds["contiguous"], seconds["channels_last"]
    errors = errors_against(reference, outputs)
    as_accurate = all(e["channels_last"] <= max(LAYOUT_ERROR_RATIO * e["contiguous"], LAYOUT_ERROR_FLOOR)
                      for e in errors.values())
    between = max(_common.relative_error(outputs["channels_last"][k].detach().double().cpu(),
                                         outputs["contiguous"][k].detach().double().cpu()) for k in reference)
    return {"path": path, "precision": precision, "batch": batch, "contiguous_s": contiguous,
            "channels_last_s": last, "speedup": contiguous / last, "layouts_differ": between,
            "errors_vs_float64": errors, "as_accurate": as_accurate,
            "channels_last_fits": as_accurate and contiguous / last >= 1 - LAYOUT_NOISE}


def _pass_outputs(model: TrainingNet, x: torch.Tensor, labels: torch.Tensor, precision: str,
                  device: torch.device, first: str) -> dict:
    """One training pass (the same dropout masks every call): fc8 scores and the first convolution's
    weight gradient."""
    model.zero_grad(set_to_none=True)
    generator = torch.Generator(device=device).manual_seed(0)
    with autocast(precision, device):
        scores = model(x, generator)
    torch.nn.functional.cross_entropy(scores.float() if scores.dtype != torch.float64 else scores,
                                      labels).backward()
    return {"fc8": scores.detach(), f"{first}_grad": getattr(model.net, first).weight.grad.detach().clone()}


def training_layouts(network: str, weights: Path, precision: str, device: torch.device, batch: int,
                     repeats: int) -> dict:
    """The fine-tuning training pass (forward with dropout, loss, backward) of C3D or VGG-19 in each layout,
    timed, and its outputs against the same pass in float64 (contiguous, on the CPU)."""
    base = finetune_network(weights, 2) if network == "c3d" else vgg_network(weights, 2)
    shape, first = ((3, 16, 112, 112), "conv1a") if network == "c3d" else ((3, 224, 224), "conv1_1")
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1)) * 50
    labels = torch.zeros(batch, dtype=torch.long)
    models = {"contiguous": TrainingNet(copy.deepcopy(base).to(device), channels_last=False).train(),
              "channels_last": TrainingNet(to_fast_layout(copy.deepcopy(base).to(device))).train()}
    runs = {name: (lambda m=m: _pass_outputs(m, x.to(device), labels.to(device), precision, device, first))
            for name, m in models.items()}
    seconds, outputs = interleaved_seconds(runs, repeats, device)
    exact = TrainingNet(copy.deepcopy(base).double(), channels_last=False).train()
    reference = _pass_outputs(exact, x.double(), labels, "float32", torch.device("cpu"), first)
    name = {"c3d": "C3D", "vgg": "VGG-19"}[network]
    return layout_row(f"{name} finetune training pass (fwd+bwd)", precision, batch, seconds, outputs,
                      {k: v.double() for k, v in reference.items()})


def extraction_layouts(network: str, precision: str, device: torch.device, clips: int, repeats: int) -> dict:
    """C3D fc6 (on ``clips`` clips and their flips) or VGG-19 fc6 (on 2 × ``clips`` frames, the attended
    frames of ``clips`` clips, and their flips)
    in eval mode as `FeatureExtractor` runs them (``features`` in inference mode, autocast for the low
    precision, the input converted to the layout), in each layout, and in float64; timed on the networks
    directly so that it does not depend on the layout FeatureExtractor picks."""
    generator = torch.Generator().manual_seed(2)
    if network == "c3d":
        base, layer, ndim = C3D(), "fc6-1", 5
        with torch.no_grad():
            base.conv1a.weight /= 128             # as prepare(): activations of order 1 on 0–255 input
        frames = torch.randint(0, 256, (clips, 16, 240, 320, 3), dtype=torch.uint8, generator=generator)
        batch = torch.cat([preprocess_c3d(v, C3D_MEAN_BGR) for v in (frames, frames.flip(3))])
    else:
        base, layer, ndim = VGG19(), "fc6", 4
        with torch.no_grad():
            base.conv1_1.weight /= 128
        frames = torch.randint(0, 256, (2 * clips, 240, 320, 3), dtype=torch.uint8, generator=generator)
        batch = torch.cat([preprocess_vgg(v) for v in (frames, frames.flip(2))])
    formats = {"contiguous": torch.contiguous_format, "channels_last": fast_layout(ndim)}
    nets = {name: copy.deepcopy(base).to(device, memory_format=fmt).eval() for name, fmt in formats.items()}
    batch = batch.to(device)

    def run(name: str):
        @torch.inference_mode()
        def forward() -> dict:
            with autocast(precision, device):
                x = batch.contiguous(memory_format=formats[name])
                return {"fc6": nets[name].features(x, (layer,))[layer].float()}
        return forward
    seconds, outputs = interleaved_seconds({name: run(name) for name in formats}, repeats, device)
    with torch.inference_mode():
        exact = copy.deepcopy(base).double().eval()
        reference = {"fc6": exact.features(batch.double().cpu(), (layer,))[layer]}
    name = {"c3d": "C3D", "vgg": "VGG-19"}[network]
    return layout_row(f"{name} extraction forward (fc6, with flips)", precision, len(batch), seconds, outputs,
                      reference)


def layout_reason(row: dict) -> str:
    """Why one row picks its layout: the speed-up, and the accuracy of both against float64."""
    speed = f"channels_last {row['speedup']:.2f}x as fast"
    worst = {k: e for k, e in row["errors_vs_float64"].items()}
    accuracy = ", ".join(f"{k} {e['channels_last']:.1e} vs {e['contiguous']:.1e}" for k, e in worst.items())
    if not row["as_accurate"]:
        return f"{speed}, but less accurate against float64 ({accuracy})"
    if row["speedup"] < 1 - LAYOUT_NOISE:
        return f"{speed}: more than {LAYOUT_NOISE:.0%} slower (error against float64: {accuracy})"
    return f"{speed}, as accurate against float64 ({accuracy})"


CODE_USES = {
    "C3D finetune training pass (fwd+bwd)":
        "channels_last_3d (reproduce/finetuning/run.py: run_job → to_fast_layout, TrainingNet)",
    "VGG-19 finetune training pass (fwd+bwd)":
        "channels_last (reproduce/finetuning/run.py: run_job → to_fast_layout, TrainingNet)",
    "C3D extraction forward (fc6, with flips)":
        "channels_last_3d on every device (caffe_models/extract.py: FeatureExtractor)",
    "VGG-19 extraction forward (fc6, with flips)":
        "channels_last on every device (caffe_models/extract.py: FeatureExtractor)",
}


def layout_decision(rows: list[dict]) -> dict:
    """Per path: the layout the measurement picks (channels_last where it fits every precision), why, and
    what the code uses now."""
    out = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        mine = [r for r in rows if r["path"] == path]
        choice = "channels_last" if all(r["channels_last_fits"] for r in mine) else "contiguous"
        why = "; ".join(f"{r['precision']}: {layout_reason(r)}" for r in mine)
        out[path] = {"measured_choice": choice, "why": why, "code_uses": CODE_USES[path]}
    return out


def prepare(folder: Path, args) -> dict:
    """The video, its clip list and frame list, a mean cube, full-size random "pre-trained" weights."""
    width, height = (int(v) for v in args.size.lower().split("x"))
    video = folder / "train.mp4"
    write_test_video(video, args.frames, width, height)
    clips = folder / "train.lst"
    clips.write_text("".join(f"{video} {(7 * k) % (args.frames - 16)} {k % 2}\n" for k in range(args.clips)))
    with VideoReader(video) as reader:
        frame = next(reader.chunks(1)).frames[0]                # (H, W, 3) uint8 RGB
    Image.fromarray(frame).save(folder / "frame.png")
    images = folder / "images.txt"
    images.write_text("".join(f"{folder / 'frame.png'} {k % 2}\n" for k in range(args.clips)))
    mean = np.full((3, 16, 128, 171), 110, np.float32)
    save_mean(mean, folder / "mean.binaryproto")
    c3d, vgg = C3D(), VGG19()
    with torch.no_grad():            # activations of order 1 on 0–255 input, as trained weights give: no
        c3d.conv1a.weight /= 128     # saturated softmax, whose denormal gradients slow float32 ~8× on CPUs
        vgg.conv1_1.weight /= 128
    names = {n: n for n in c3d.caffe_parameters()} | {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    save_caffemodel(c3d, folder / "c3d.caffemodel", layers=names)
    save_caffemodel(vgg, folder / "vgg.caffemodel", schema="bvlc-v2")
    return {"folder": folder, "clips": clips, "images": images, "mean": mean,
            "mean_file": folder / "mean.binaryproto", "c3d": folder / "c3d.caffemodel",
            "vgg": folder / "vgg.caffemodel"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--part"]:                     # a stage of `measure`, in a process of its own
        warnings.simplefilter("ignore", RandomWeightsWarning)
        result = measure_part(argv[1], json.loads(argv[2]))
        print(json.dumps(result | {"peak_rss_mb": _common.peak_rss()["self_mb"]}))
        return 0
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and updates (smoke run)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=64, help="video length (default 64)")
    parser.add_argument("--size", default="320x240", help="video WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--clips", type=int, default=32, help="list lines (default 32)")
    parser.add_argument("--c3d-batch", type=int, default=None, help="clips per update (cpu 4, cuda 30)")
    parser.add_argument("--vgg-batch", type=int, default=None, help="images per update (cpu 8, cuda 50)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed updates (default 3, quick 1)")
    parser.add_argument("--iterations", type=int, default=None, help="pipeline updates (default 6, quick 2)")
    parser.add_argument("--data-batches", type=int, default=None, help="data batches (default 6, quick 2)")
    parser.add_argument("--extract-clips", type=int, default=None,
                        help="clips per extraction batch in the layout comparison (cpu 4, cuda 32, as "
                             "alstm extract; their flips are added)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/finetune.json)")
    args = parser.parse_args(argv)
    device, problem = _common.cuda_or_message(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    args.c3d_batch = args.c3d_batch or (30 if cuda else 4)
    args.vgg_batch = args.vgg_batch or (50 if cuda else 8)
    args.extract_clips = args.extract_clips or (32 if cuda else 4)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.iterations = args.iterations or (2 if args.quick else 6)
    args.data_batches = args.data_batches or (2 if args.quick else 6)
    out = args.out or _common.results_path("finetune", device)
    warnings.simplefilter("ignore", RandomWeightsWarning)
    load_before = os.getloadavg()
    rows, layouts = [], []
    precisions = ("float32", "float16" if cuda else "bfloat16")
    with tempfile.TemporaryDirectory() as folder:
        files = prepare(Path(folder), args)
        for network in ("c3d", "vgg"):
            for precision in precisions:
                rows.append(measure(network, files, precision, device, args))
                print(f"measured {network} {precision}", file=sys.stderr, flush=True)
        for precision in precisions:
            for network in ("c3d", "vgg"):
                batch = args.c3d_batch if network == "c3d" else args.vgg_batch
                layouts.append(training_layouts(network, files[network], precision, device, batch,
                                                args.repeats))
                layouts.append(extraction_layouts(network, precision, device, args.extract_clips,
                                                  args.repeats))
                print(f"measured {network} layouts {precision}", file=sys.stderr, flush=True)
    pipeline_met = all(r["pipeline_vs_bound"] >= TARGET_PIPELINE_FRACTION for r in rows)
    peak_met = all(r["peak_target_met"] for r in rows)
    met = pipeline_met and peak_met
    decision = layout_decision(layouts)
    payload = {
        "benchmark": "finetune", "quick": args.quick, "device": _common.device_name(device),
        "networks": "full size (C3D 64…512 channels, fc 4096; VGG-19 64…512, fc 4096), random weights",
        "video": {"frames": args.frames, "size": args.size, "codec": "h264 yuv420p",
                  "list_lines": args.clips},
        "workers": args.workers,
        "unit": "C3D: 16-frame clips per second; VGG-19: images per second",
        "targets": {"pipeline_fraction_of_bound_min": TARGET_PIPELINE_FRACTION, "met": met,
                    "pipeline_met": pipeline_met, "train_peak_fraction_min": TARGET_PEAK_FRACTION,
                    "train_peak_fraction_met": peak_met,
                    "train_peak_fractions": {f"{r['network']} {r['precision']}":
                                             round(r["train_peak_fraction"], 3) for r in rows}},
        "flops": "torch.utils.flop_counter.FlopCounterMode over one update (forward + backward convolutions "
                 "and matrix products); train_gflops = those FLOPs / the median training pass (zero_grad, "
                 "forward, loss, backward; the CaffeSGD step not included: update_peak_fraction includes it)",
        "peak": f"square torch.mm of {PEAK_SIZE[device.type]}, operands in the row's precision, median of "
                "samples taken between the timed updates",
        "rows": rows,
        "layout": {"networks": "C3D and VGG-19 full size, random weights",
                   "speedup": "contiguous seconds / channels_last seconds (channels_last_3d for C3D; "
                              "median, interleaved)",
                   "noise": LAYOUT_NOISE, "repeats": args.repeats,
                   "accuracy": f"errors_vs_float64: ‖x − float64 pass‖ / ‖float64 pass‖ per output and "
                               f"layout; as_accurate: channels_last's ≤ {LAYOUT_ERROR_RATIO:g} × "
                               f"contiguous's or ≤ {LAYOUT_ERROR_FLOOR:g}",
                   "rows": layouts, "decision": decision},
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "machine": _common.machine_description(),
        "peak_rss": _common.peak_rss(),
        "peak_gpu_memory_mb": _common.peak_gpu_memory_mb(device),
    }
    _common.write_json(out, payload)
    print(_common.format_table(rows, [
        ("network", "network", "s"), ("precision", "precision", "s"), ("batch", "batch", "d"),
        ("update", "update/s", ".2f"), ("data", "data/s", ".2f"), ("pipeline", "pipeline/s", ".2f"),
        ("data_vs_update", "data/update", ".2f"), ("pipeline_vs_bound", "pipe/bound", ".2f"),
        ("gflop_per_update", "GFLOP/upd", ".0f"), ("train_pass_s", "fwd+bwd s", ".3f"),
        ("train_gflops", "GFLOP/s", ".1f"), ("peak_gflops", "peak", ".1f"),
        ("train_peak_fraction", "of peak", ".2f"), ("pipeline_peak_rss_mb", "RSS MB", ".0f")]))
    print()
    print(_common.format_table(layouts, [
        ("path", "path", "s"), ("precision", "precision", "s"), ("batch", "batch", "d"),
        ("contiguous_s", "contiguous s", ".3f"), ("channels_last_s", "ch.last s", ".3f"),
        ("speedup", "contig/ch.last", ".2f"), ("layouts_differ", "layouts differ", ".1e"),
        ("as_accurate", "as accurate", "")]))
    for path, d in decision.items():
        print(f"{path}: measured choice {d['measured_choice']} ({d['why']}); code uses {d['code_uses']}")
    rss = payload["peak_rss"]
    print(f"items/s (C3D clips, VGG images), full-size networks; target pipeline ≥ "
          f"{TARGET_PIPELINE_FRACTION:.0%} of its slower stage: {'met' if pipeline_met else 'not met'}; "
          f"training pass ≥ {TARGET_PEAK_FRACTION:.0%} of the matmul peak: "
          f"{'met' if peak_met else 'not met'}; peak RSS "
          f"{rss['self_mb']:.0f} MB (largest measuring process {rss['children_mb']:.0f} MB); load "
          f"{load_before[0]:.1f} → "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
