"""The CUDA paths against the CPU: the model's forward and gradient, training, evaluation and feature
extraction give the CPU's numbers on a GPU (float32 with TF32 off), and the reduced precisions that
the benchmarks use stay within their stated tolerances of float64. Skipped where torch sees no GPU;
the nccl test needs two.
"""

import copy

import numpy as np
import pytest
import torch
from helpers.distributed import FLAGS, LOSS_TOLERANCE, TINY, flags, records, torchrun
from helpers.networks import ListWriter, small_c3d, small_vgg
from helpers.videos import moving_frames, write_video
from torch.nn import functional as F

from bricks import AttentionLSTM
from caffe_models.extract import AUTO_TOLERANCE, FeatureExtractor, extract_videos
from fuel_datasets.synthetic import SynthConfig, write_synthetic
from reproduce.evaluation.evaluate import evaluate_checkpoints
from reproduce.training.config import TrainConfig
from reproduce.training.loop import train

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning"),
]

# Relative error (norm of the difference over norm of float64) allowed per precision; float32 on a
# GPU differs from the CPU only in the order of its sums.
TOLERANCE = {"float32": 1e-5, "tf32": 1e-2, "bfloat16": 5e-2}


@pytest.fixture(autouse=True)
def float32_by_default():
    """Every test starts with TF32 off (torch's cuDNN default is on) and restores the switches."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(value, reference) -> float:
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return float((value - reference).norm() / reference.norm())


def scores_and_gradient(model, inputs, attended, targets):
    """Video scores (B, C) and the flattened gradient of the mean NLL, in eval mode (no dropout)."""
    model.eval().zero_grad(set_to_none=True)
    scores = model(inputs, attended).scores
    F.nll_loss(torch.log(scores.double()), targets).backward()
    gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return scores.detach(), gradient


@pytest.mark.parametrize("variant, attention", [("a", True), ("b", True), ("a", False)])
@pytest.mark.parametrize("precision", ["float32", "tf32", "bfloat16"])
def test_model_on_cuda_matches_float64(variant, attention, precision):
    g = torch.Generator().manual_seed(0)
    B, N, T, Dv, Da, C = 16, 6, 6, 64, 48, 7
    model = AttentionLSTM(Dv, Da, C, hidden_dim=32, match_dim=24, variant=variant, attention=attention,
                          generator=g)
    inputs, attended = torch.randn(B, N, Dv, generator=g), torch.randn(B, T, Da, generator=g)
    targets = torch.randint(0, C, (B,), generator=g)
    ref_scores, ref_gradient = scores_and_gradient(copy.deepcopy(model).double(), inputs.double(),
                                                   attended.double(), targets)
    cuda = copy.deepcopy(model).cuda()
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        scores, gradient = scores_and_gradient(cuda, inputs.cuda(), attended.cuda(), targets.cuda())
    assert relative_error(scores, ref_scores) < TOLERANCE[precision]
    assert relative_error(gradient, ref_gradient) < TOLERANCE[precision]
    if precision != "float32":   # the reduced precision is really in use
        assert relative_error(scores, ref_scores) > 1e-7


def test_dropout_masks_come_from_a_cuda_generator_and_repeat_with_its_seed():
    model = AttentionLSTM(8, 6, 3, hidden_dim=8, match_dim=4, generator=torch.Generator().manual_seed(0))
    model = model.cuda().train()
    inputs, attended = torch.randn(4, 5, 8, device="cuda"), torch.randn(4, 5, 6, device="cuda")
    runs = [model(inputs, attended, generator=torch.Generator("cuda").manual_seed(seed)).scores
            for seed in (1, 1, 2)]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.allclose(runs[0], runs[2])


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.h5"
    write_synthetic(path, SynthConfig(**TINY))
    return path


def test_training_and_evaluation_on_cuda_follow_the_cpu(synth, tmp_path):
    """Dropout 0 (the one random draw that depends on the device): the same windows, so the same loss
    curve up to float32 rounding, a checkpoint that loads on either device, and the same report."""
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = tmp_path / device
        train(TrainConfig(data=str(synth), iterations=7, **FLAGS), str(runs[device]), device=device,
              log_every=1, checkpoint_every=3, progress=False)
    cpu, gpu = records(runs["cpu"], "train"), records(runs["cuda"], "train")
    assert [r["iteration"] for r in gpu] == list(range(1, 8))
    np.testing.assert_allclose([r["loss"] for r in gpu], [r["loss"] for r in cpu], rtol=1e-4, atol=1e-5)
    reports = {}
    for device in ("cpu", "cuda"):
        for trained in ("cpu", "cuda"):
            report = evaluate_checkpoints(str(synth), [str(runs[trained] / "best.pt")], split="train",
                                          crops=4, device=device)
            reports[device, trained] = report, report.video_scores
    for trained in ("cpu", "cuda"):
        (a, sa), (b, sb) = reports["cpu", trained], reports["cuda", trained]
        np.testing.assert_allclose(sb.scores, sa.scores, rtol=1e-4, atol=1e-6)
        assert a.accuracy == b.accuracy
    np.testing.assert_allclose(reports["cuda", "cuda"][1].scores, reports["cuda", "cpu"][1].scores, atol=2e-3)


def test_resuming_a_cuda_run_continues_its_dropout_stream(synth, tmp_path):
    """With dropout on, 4 updates then a resume to 7 log the losses of 7 updates in one go."""
    flags = dict(FLAGS, dropout=0.5, validate_every=0)
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(TrainConfig(data=str(synth), iterations=7, **flags), str(whole), device="cuda", log_every=1,
          progress=False)
    train(TrainConfig(data=str(synth), iterations=4, **flags), str(split), device="cuda", log_every=1,
          checkpoint_every=4, progress=False)
    train(TrainConfig(data=str(synth), iterations=7, **flags), str(split), device="cuda", log_every=1,
          resume=True, progress=False)
    a, b = records(whole, "train"), records(split, "train")
    assert [r["iteration"] for r in b] == list(range(1, 8))
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "clip.mkv"
    frames = moving_frames(40, 61, 97, seed=1)
    write_video(path, frames, "ffv1", fps=30)
    return path


def extract(video, device, precision, channels_last=False, auto_dtype=None):
    c3d, vgg = small_c3d(), small_vgg(width=4)
    extractor = FeatureExtractor(c3d, {"obj": vgg}, device=device, precision=precision,
                                 channels_last=channels_last, auto_dtype=auto_dtype)
    writer = ListWriter()
    summary = extract_videos([("clip", video)], writer, extractor, batch_size=2, workers=2, progress=False)
    assert summary.written == ["clip"]
    return writer


def test_extraction_on_cuda_matches_the_cpu(video):
    """float32 on CUDA (TF32 kept off by the extractor even where torch would allow it) equals the
    CPU's features; float16 autocast with channels_last stays within the auto tolerance; "auto" keeps
    float16 and records why."""
    torch.backends.cudnn.allow_tf32 = True          # torch's default; "float32" must override it
    cpu = extract(video, "cpu", "float32").videos["clip"]["features"]
    gpu = extract(video, "cuda", "float32").videos["clip"]["features"]
    half = extract(video, "cuda", "float16", channels_last=True).videos["clip"]["features"]
    auto = extract(video, "cuda", "auto", channels_last=True, auto_dtype=torch.float16)
    assert set(gpu) == set(cpu) == set(half)
    for source, value in cpu.items():
        value = torch.from_numpy(value)
        assert relative_error(torch.from_numpy(gpu[source]), value) < 1e-5, source
        assert relative_error(torch.from_numpy(half[source]), value) < AUTO_TOLERANCE, source
    assert auto.info["c3d_fc6"]["precision"].startswith("float16 autocast (auto: float16 deviates")


@pytest.mark.usefixtures("small_networks")
def test_the_extract_command_on_cuda_with_its_defaults(tmp_path):
    """`alstm extract` with its CUDA defaults (precision auto, channels_last, 8 decode workers reading
    ahead, batches of 32) writes the CPU run's videos, splits and features, and records the precision
    it chose. "auto" judges float16 on the first batch (max deviation ≤ AUTO_TOLERANCE of the layer's
    scale); other batches of these 2-channel random networks then deviate up to about 1.3% in norm,
    hence the looser bound here."""
    from fuel_datasets import open_dataset
    from reproduce.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(5):
        write_video(folder / f"v{k}.mkv", moving_frames(48 + 16 * k, 40, 56, seed=k), "ffv1")
    common = ["extract", str(folder), "--classes", "a,b", "--allow-random-weights", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "cpu.h5"), "--device", "cpu"]) == 0
    assert main([*common, "--out", str(tmp_path / "gpu.h5"), "--device", "cuda"]) == 0
    with open_dataset(tmp_path / "cpu.h5") as cpu, open_dataset(tmp_path / "gpu.h5") as gpu:
        assert gpu.splits == cpu.splits and gpu.sources == cpu.sources
        for source in (s for s in cpu.sources if s != "targets"):
            for vid in cpu.splits["test"]:
                error = relative_error(torch.from_numpy(gpu.read(source, vid)),
                                       torch.from_numpy(cpu.read(source, vid)))
                assert error < 3 * AUTO_TOLERANCE, (source, vid, error)
        assert gpu.source_info("c3d_fc6")["precision"].startswith(("float16 autocast (auto", "float32 (auto"))
        assert cpu.source_info("c3d_fc6")["precision"].startswith("float32")


def test_two_gpu_processes_follow_the_single_gpu_loss_curve(synth, tmp_path):
    """torchrun with 2 processes on 2 GPUs (nccl), global batch 8 = 2 × 4, dropout 0: the losses of one
    process on one GPU."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"nccl runs one process per GPU and refuses two on one device; this machine has "
                    f"{torch.cuda.device_count()} GPU (test_distributed checks the same job on gloo)")
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    train(TrainConfig(data=str(synth), iterations=5, **FLAGS), str(single), device="cuda", log_every=1,
          progress=False)
    torchrun("train", "--data", synth, "--out", ddp, "--log-every", "1", "--quiet", "--device", "cuda",
             *flags(), "--iterations", "5")
    np.testing.assert_allclose([r["loss"] for r in records(ddp, "train")],
                               [r["loss"] for r in records(single, "train")], rtol=0, atol=LOSS_TOLERANCE)
