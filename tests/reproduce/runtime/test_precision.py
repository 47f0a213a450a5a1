"""bfloat16 on the CPU: the native-support check (forced both ways), what ``auto`` picks (extraction keeps
bfloat16 only within 1% of float32 relative to each layer's scale), and bfloat16 against float32 and
float64 on the model's scores and gradients, both networks' features, training (float32 master weights
and update) and evaluation, with the precision recorded in every output.

Tolerances (relative: the largest absolute difference over the largest absolute reference value, or
the norm of the difference over the reference's norm for gradients). bfloat16 keeps 8 bits of mantissa
(a rounding error of 2^-9 ≈ 2e-3 per operand); products accumulate in float32, so errors stay near that:
- model scores: ≤ 2e-2 of float64 (float32: ≤ 1e-5);
- model gradient: ≤ 5e-2 of float64 (float32: ≤ 1e-5);
- network features (C3D, VGG-19 at reduced width): ≤ 3e-2 of float32;
- evaluation metrics of a trained model: within 5 points of float32's.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from helpers.networks import small_c3d, small_vgg

import reproduce.runtime.precision as precision_module
from bricks import AttentionLSTM
from caffe_models import preprocess_c3d, preprocess_vgg
from caffe_models.extract import AUTO_TOLERANCE, FeatureExtractor
from caffe_models.preprocess import C3D_MEAN_BGR
from fuel_datasets import open_dataset
from reproduce.cli import main
from reproduce.errors import ReproduceError
from reproduce.evaluation.evaluate import evaluate_checkpoints
from reproduce.runs.checkpoint import load_checkpoint
from reproduce.runtime.precision import native_bfloat16, resolve
from reproduce.training.config import TrainConfig
from reproduce.training.loop import train

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")]


def _relative(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference.double()).abs().max() / reference.double().abs().max())


def test_native_support_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    flags = precision_module.cpu_flags(cpuinfo)
    assert "avx512_bf16" in flags and native_bfloat16(flags)
    assert native_bfloat16(frozenset({"avx512_bf16"})) and native_bfloat16(frozenset({"amx_bf16"}))
    assert not native_bfloat16(frozenset({"avx2", "avx512f", "avx512_vnni"}))
    assert precision_module.cpu_flags(tmp_path / "missing") == frozenset()
    assert resolve("auto", "cpu", native=True) == "bfloat16"
    assert resolve("auto", "cpu", native=False) == "float32"
    assert resolve("float32", "cpu", native=True) == "float32"
    assert resolve("bfloat16", "cpu", native=False) == "bfloat16"          # asked for: honoured
    with pytest.raises(ReproduceError, match="--precision float16 needs a CUDA device"):
        resolve("float16", "cpu")


@pytest.mark.parametrize("native", [True, False], ids=["native", "not-native"])
def test_extract_auto_never_picks_bfloat16_without_native_support(tmp_path, clip_videos, small_networks,
                                                                  monkeypatch, capsys, native):
    folder, _ = clip_videos
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda flags=None: native)
    out = tmp_path / "f.h5"
    assert main(["extract", str(folder / "h264.mp4"), "--out", str(out), "--allow-random-weights",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    with open_dataset(out) as ds:
        recorded = {ds.source_info(s)["precision"] for s in ds.feature_sources}
    if native:   # bfloat16 autocast, kept if the first batch stays within 1% of float32
        assert all("auto: bfloat16 deviates" in text for text in recorded), recorded
    else:
        assert recorded == {"float32 (auto)"}
    line = [x for x in printed.splitlines() if x.startswith("precision: ")]
    assert len(line) == 1 and all(text in line[0] for text in recorded)


def _deviating(net, scale: float, deviation: float):
    """``net`` with its features rescaled to a largest magnitude of ``scale`` in every layer, and moved
    under autocast by ``deviation`` of that scale: a low-precision error of a size chosen exactly."""
    features = net.features

    def scaled(batch, names):
        low = torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False):
            out = features(batch, names)
            return {k: v / v.abs().max() * scale * (1.0 + deviation if low else 1.0) for k, v in out.items()}

    net.features = scaled
    return net


@pytest.mark.parametrize("scale, deviation, kept", [
    (1e4, 5e-3, True),       # 0.5% of the scale, 50 in absolute terms: bfloat16 kept
    (1e-4, 5e-2, False),     # 5% of the scale, 5e-6 in absolute terms: float32
    (1.0, 5e-3, True),
    (1.0, 5e-2, False),
], ids=["large-features-small-relative-error", "tiny-features-large-relative-error", "unit-kept",
        "unit-rejected"])
def test_auto_keeps_bfloat16_only_within_1_percent_of_the_feature_scale(clip_videos, scale, deviation, kept):
    """`alstm extract --precision auto` (bfloat16 where native) keeps bfloat16 when the first batch lies
    within 1% (AUTO_TOLERANCE) of float32 relative to each layer's largest float32 value. An absolute
    rule would reject large features (fc8 scores in the thousands) for a 0.5% rounding error, and accept
    tiny ones whatever their relative error."""
    _, truths = clip_videos
    extractor = FeatureExtractor(_deviating(small_c3d(), scale, deviation), None, flip=False,
                                 precision="auto", auto_dtype=torch.bfloat16)
    assert extractor.tolerance == AUTO_TOLERANCE == 1e-2
    clip = torch.from_numpy(truths["odd"][:16])[None]         # (1, 16, H, W, 3): the first batch
    first = extractor(clip)["c3d_fc6"]
    assert np.abs(first).max() == pytest.approx(scale, rel=1e-6)     # the trial batch is float32's
    chosen = extractor.describe_precision()
    expected = "c3d bfloat16 autocast (auto: bfloat16" if kept else "c3d float32 (auto: bfloat16"
    assert chosen.startswith(expected), chosen
    assert f"deviates {deviation:.1e} of the float32 scale" in chosen, chosen
    later = extractor(clip)["c3d_fc6"]                        # the choice holds for the next batches
    np.testing.assert_allclose(later, first * (1.0 + deviation if kept else 1.0), rtol=1e-5)


@pytest.mark.parametrize("variant, attention", [("a", True), ("b", True), ("a", False)],
                         ids=["variant-a", "variant-b", "vanilla"])
def test_model_scores_and_gradients_in_bfloat16(variant, attention):
    generator = torch.Generator().manual_seed(0)
    model = AttentionLSTM(512, 256, 50, hidden_dim=128, match_dim=64, variant=variant, attention=attention,
                          dropout=0.0, generator=generator)
    inputs = torch.randn(16, 12, 512, generator=generator)
    attended = torch.randn(16, 12, 256, generator=generator)
    targets = torch.randint(0, 50, (16,), generator=generator)

    def run(net, cast, dtype=None):
        net.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        with context:
            out = net(cast(inputs), cast(attended) if attention else None)
        loss = torch.nn.functional.nll_loss(torch.log(out.scores.double()), targets)
        loss.backward()
        return out.scores.detach(), torch.cat([p.grad.reshape(-1) for p in net.parameters()])

    reference = copy.deepcopy(model).double()
    ref_scores, ref_grad = run(reference, lambda x: x.double())
    f32_scores, f32_grad = run(model, lambda x: x)
    bf16_scores, bf16_grad = run(model, lambda x: x, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())    # master weights stay float32
    assert _relative(f32_scores, ref_scores) <= 1e-5
    assert float((f32_grad.double() - ref_grad).norm() / ref_grad.norm()) <= 1e-5
    assert 1e-5 < _relative(bf16_scores, ref_scores) <= 2e-2        # really bfloat16, and close
    assert float((bf16_grad.double() - ref_grad).norm() / ref_grad.norm()) <= 5e-2


def test_network_features_in_bfloat16(clip_videos):
    _, truths = clip_videos
    frames = truths["odd"][:32]
    clips = torch.from_numpy(frames).view(2, 16, *frames.shape[1:])
    for net, batch, layers in ((small_c3d(), preprocess_c3d(clips, C3D_MEAN_BGR), ["fc6-1", "fc8-1"]),
                               (small_vgg(), preprocess_vgg(clips[:, 0], size=32), ["fc6", "fc8"])):
        with torch.no_grad():
            exact = net.features(batch, layers)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = net.features(batch, layers)
        for layer in layers:
            assert 0 < _relative(low[layer].float(), exact[layer]) <= 3e-2, (type(net).__name__, layer)


def test_training_in_bfloat16_keeps_float32_weights_and_learns(toy, tmp_path, monkeypatch):
    config = TrainConfig(data=str(toy), input_source="c3d", attended_source="vgg", hidden_dim=16,
                         match_dim=8, frames=48, steps=3, batch_size=16, iterations=40, lr=0.2,
                         lr_fixed_iterations=40, dropout=0.0, validate_every=40, valid_crops=2, seed=1,
                         precision="bfloat16")
    train(config, str(tmp_path / "bf16"), device="cpu", progress=False, checkpoint_every=40, log_every=5)
    log = [json.loads(line) for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    assert losses[-1] < 0.5 * losses[0] and [r for r in log if r["kind"] == "valid"][-1]["accuracy"] >= 0.8
    saved = load_checkpoint(tmp_path / "bf16" / "last.pt")
    assert saved["config"]["precision"] == "bfloat16"
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["precision"] == "bfloat16"
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())
    momentum = [v for state in saved["optimizer"]["state"].values() for v in state.values()
                if torch.is_tensor(v) and v.is_floating_point()]
    assert momentum and all(v.dtype == torch.float32 for v in momentum)
    # auto is resolved, and recorded resolved: bfloat16 only where it is native
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(precision_module, "native_bfloat16", lambda flags=None, n=native: n)
        run = tmp_path / f"auto-{native}"
        train(config.replace(precision="auto", iterations=2, validate_every=0), str(run), device="cpu",
              progress=False)    # the CPU's choice (the library reads no $ALSTM_DEVICE)
        assert json.loads((run / "config.json").read_text())["precision"] == expected


def test_evaluation_in_bfloat16_is_recorded_and_close_to_float32(toy, tmp_path, capsys):
    config = TrainConfig(data=str(toy), input_source="c3d", attended_source="vgg", hidden_dim=16,
                         match_dim=8, frames=48, steps=3, batch_size=16, iterations=30, lr=0.2,
                         lr_fixed_iterations=30, dropout=0.0, validate_every=0, seed=1)
    train(config, str(tmp_path / "run"), device="cpu", progress=False)
    checkpoint = str(tmp_path / "run" / "best.pt")
    exact = evaluate_checkpoints(str(toy), [checkpoint], split="valid", crops=4, device="cpu")
    low = evaluate_checkpoints(str(toy), [checkpoint], split="valid", crops=4, precision="bfloat16",
                               device="cpu")
    assert exact.precision == "float32" and low.precision == "bfloat16"
    assert np.abs(low.video_scores.scores - exact.video_scores.scores).max() <= 2e-2
    assert abs(low.mAP - exact.mAP) <= 0.05 and abs(low.accuracy - exact.accuracy) <= 0.05
    assert main(["evaluate", "--data", str(toy), "--checkpoint", checkpoint, "--split", "valid", "--crops",
                 "4", "--precision", "bfloat16", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["precision"] == "bfloat16"
    assert "; bfloat16)" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(toy), "--checkpoint", checkpoint, "--precision", "float16",
                 "--quiet"]) == 2
    assert "--precision float16 needs a CUDA device" in capsys.readouterr().err
