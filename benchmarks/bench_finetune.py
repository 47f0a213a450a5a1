"""Speed of fine-tuning (`alstm finetune c3d | vgg`): the networks' updates, the data pipeline, and both.

Workload: one generated H.264 (yuv420p) video of --frames frames at --size (default 320×240, the common
ActivityNet size) listed --clips times as training samples; **full-size** C3D and VGG-19 (random
"pre-trained" weights written to a temporary .caffemodel, their first convolution scaled so that
activations are of order 1 as with trained weights: random weights on 0–255 input saturate the softmax,
and its denormal gradients slow float32 updates about 8× on a CPU), at
batch --c3d-batch (default 4) and --vgg-batch (default 8), smaller than the examples' 30 and 50 so that
an update fits a few seconds on two cores. Rows per network and precision (float32, and bfloat16
autocast on the CPU / float16 on CUDA, as ``--precision``):

    update      clips (C3D) or images (VGG) per second of whole updates on batches held in memory:
                forward with dropout, SOFTMAX_LOSS, backward, CaffeSGD step
    data        clips or images per second of the data layer alone (VIDEO_DATA / ImageData: decoding,
                resizing, crop, mean, mirror) in --workers DataLoader processes, no network
    pipeline    clips or images per second of `finetune_c3d` / `finetune_vgg` themselves over
                --iterations updates after a first one (data workers ∥ the network, as the command runs;
                timed from the end of the first update to the end of the last, by its callback)
    data/update the data pipeline's speed as a share of the network's: ≥ 1 means the data keeps up

Target: pipeline ≥ 0.8 × min(update, data) (the slower stage kept busy). Peak RSS of this process and
of its DataLoader workers is reported. Usage: ``python benchmarks/bench_finetune.py [--quick] [--device
cpu|cuda]``; writes ``benchmarks/results/finetune.json`` (``results/cuda/finetune.json`` on CUDA) and
prints a table. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
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

from caffe_models import C3D, VGG19, RandomWeightsWarning, VideoReader  # noqa: E402
from caffe_models.writer import save_caffemodel, save_mean  # noqa: E402
from reproduce.finetuning.c3d import finetune_c3d, finetune_network  # noqa: E402
from reproduce.finetuning.clips import image_samples, list_samples  # noqa: E402
from reproduce.finetuning.run import TrainingNet  # noqa: E402
from reproduce.finetuning.solver import CaffeSGD, SolverSettings, caffe_param_groups  # noqa: E402
from reproduce.finetuning.vgg import ImageDataLayer, finetune_vgg, vgg_network  # noqa: E402
from reproduce.finetuning.video_data import TrainBatches, VideoDataLayer, batch_loader  # noqa: E402
from reproduce.runtime.precision import autocast  # noqa: E402

TARGET_PIPELINE_FRACTION = 0.8


def update_rate(net, batch, precision, device, repeats) -> float:
    """Items per second of whole updates (forward, loss, backward, step) on one batch in memory."""
    net = net.to(device)
    if batch.ndim == 5:
        net = net.to(memory_format=torch.channels_last_3d)
    model = TrainingNet(net).train()
    optimizer = CaffeSGD(caffe_param_groups(net), SolverSettings(base_lr=1e-6))
    labels = torch.zeros(len(batch), dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    batch = batch.to(device)

    def step():
        with autocast(precision, device):
            scores = model(batch, generator)
        loss = torch.nn.functional.cross_entropy(scores.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    step()                                                    # warm-up (oneDNN / cuDNN plans)
    times = [_common.time_call(step) for _ in range(repeats)]
    return len(batch) / _common.median(times)


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


def measure(network: str, files: dict, precision: str, device: torch.device, args) -> dict:
    batch = args.c3d_batch if network == "c3d" else args.vgg_batch
    folder = files["folder"]
    if network == "c3d":
        samples = list_samples(files["clips"], num_classes=2)
        net, layer = finetune_network(files["c3d"], 2), VideoDataLayer(files["mean"])
        items = torch.randn(batch, 3, 16, 112, 112) * 50
    else:
        samples = image_samples(files["images"], num_classes=2)
        net, layer = vgg_network(files["vgg"], 2), ImageDataLayer()
        items = torch.randn(batch, 3, 224, 224) * 50
    update = update_rate(net, items, precision, device, args.repeats)
    data = data_rate(samples, layer, batch, args.workers, args.data_batches)
    def run(iterations: int, callback) -> None:
        out = folder / f"{network}_{precision}"
        options = dict(batch_size=batch, device=device, precision=precision, workers=args.workers,
                       num_classes=2, callback=callback)
        if network == "c3d":
            settings = SolverSettings(base_lr=1e-6, max_iter=iterations, snapshot=0)
            finetune_c3d(out, weights=files["c3d"], mean=files["mean_file"], list_file=files["clips"],
                         solver=settings, **options)
        else:
            settings = SolverSettings(base_lr=1e-6, max_iter=iterations, snapshot=0, semantics="bvlc")
            finetune_vgg(out, weights=files["vgg"], images=files["images"], solver=settings, **options)
    pipeline = pipeline_rate(run, args.iterations, batch)
    return {"network": network, "device": str(device), "precision": precision, "batch": batch,
            "update": update, "data": data, "pipeline": pipeline, "data_vs_update": data / update,
            "pipeline_vs_bound": pipeline / min(update, data)}


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
    parser.add_argument("--iterations", type=int, default=None, help="pipeline updates (default 4, quick 2)")
    parser.add_argument("--data-batches", type=int, default=None, help="data batches (default 6, quick 2)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/finetune.json)")
    args = parser.parse_args(argv)
    device, problem = _common.cuda_or_message(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    args.c3d_batch = args.c3d_batch or (30 if cuda else 4)
    args.vgg_batch = args.vgg_batch or (50 if cuda else 8)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.iterations = args.iterations or (2 if args.quick else 4)
    args.data_batches = args.data_batches or (2 if args.quick else 6)
    out = args.out or _common.results_path("finetune", device)
    warnings.simplefilter("ignore", RandomWeightsWarning)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = prepare(Path(folder), args)
        for network in ("c3d", "vgg"):
            for precision in ("float32", "float16" if cuda else "bfloat16"):
                rows.append(measure(network, files, precision, device, args))
                print(f"measured {network} {precision}", file=sys.stderr, flush=True)
    met = all(r["pipeline_vs_bound"] >= TARGET_PIPELINE_FRACTION for r in rows)
    payload = {
        "benchmark": "finetune", "quick": args.quick, "device": _common.device_name(device),
        "networks": "full size (C3D 64…512 channels, fc 4096; VGG-19 64…512, fc 4096), random weights",
        "video": {"frames": args.frames, "size": args.size, "codec": "h264 yuv420p",
                  "list_lines": args.clips},
        "workers": args.workers,
        "unit": "C3D: 16-frame clips per second; VGG-19: images per second",
        "targets": {"pipeline_fraction_of_bound_min": TARGET_PIPELINE_FRACTION, "met": met},
        "rows": rows,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "machine": _common.machine_description(),
        "peak_rss": _common.peak_rss(),
        "peak_gpu_memory_mb": _common.peak_gpu_memory_mb(device),
    }
    _common.write_json(out, payload)
    print(_common.format_table(rows, [
        ("network", "network", "s"), ("precision", "precision", "s"), ("batch", "batch", "d"),
        ("update", "update/s", ".2f"), ("data", "data/s", ".2f"), ("pipeline", "pipeline/s", ".2f"),
        ("data_vs_update", "data/update", ".2f"), ("pipeline_vs_bound", "pipe/bound", ".2f")]))
    rss = payload["peak_rss"]
    print(f"items/s (C3D clips, VGG images), full-size networks; target pipeline ≥ "
          f"{TARGET_PIPELINE_FRACTION:.0%} of its slower stage: {'met' if met else 'not met'}; peak RSS "
          f"{rss['self_mb']:.0f} MB (workers {rss['children_mb']:.0f} MB); load {load_before[0]:.1f} → "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
