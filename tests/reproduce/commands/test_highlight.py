"""`alstm highlight` end to end: videos encoded here with PyAV, a checkpoint trained here on a tiny
synthetic file whose dimensions match small random-weight extractors; the JSON is checked against a
direct computation (PyAV decoding, the networks on Caffe-preprocessed frames, the model per window);
bad input gives one line and exit code 2."""

import json

import numpy as np
import pytest
import torch
from helpers.networks import small_c3d, small_vgg, use_small_networks
from helpers.videos import decode_all, make_video, truncate

from bricks import AttentionLSTM
from caffe_models import preprocess_c3d, preprocess_vgg
from caffe_models.preprocess import C3D_MEAN_BGR
from fuel_datasets.synthetic import SynthConfig, write_synthetic
from reproduce import load_model
from reproduce.cli import main
from reproduce.highlighting.pipeline import VideoHighlights, highlight_video
from reproduce.highlighting.results import HighlightSettings
from reproduce.runs.checkpoint import save_checkpoint
from reproduce.training.config import TrainConfig
from reproduce.training.loop import train

FPS = 25
# the synthetic file's dims = the small networks' outputs: C3D fc6 16, fc8 6; VGG-19 fc6 12, obj fc8 10
TINY = dict(num_classes=4, num_videos=40, min_frames=48, max_frames=96, latent_dim=8, c3d_fc6_dim=16,
            c3d_fc8_dim=6, vgg_fc6_dim=12, vgg_obj_fc8_dim=10, vgg_sce_fc8_dim=6, vgg_act_fc8_dim=6)


# the networks that give them: helpers.networks' small ones, 4 channels wide
SMALL_C3D = dict(num_classes=6, width=4)
SMALL_VGG = dict(num_classes=10, width=4, fc_dim=12)


pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


@pytest.fixture(autouse=True)
def highlight_networks(monkeypatch):
    """Highlighting builds its networks through reproduce.extraction.networks; the release sizes would
    take minutes."""
    use_small_networks(monkeypatch, SMALL_C3D, SMALL_VGG)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("highlight")
    write_synthetic(root / "synth.h5", SynthConfig(**TINY))
    config = TrainConfig(data=str(root / "synth.h5"), input_source="c3d_fc6", attended_source="vgg_obj_fc8",
                         hidden_dim=8, match_dim=6, frames=48, steps=3, batch_size=6, iterations=6,
                         validate_every=0, lr=0.05, seed=3)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, str(root / "run"), device="cpu", progress=False)
    finally:
        torch.set_num_threads(before)
    truth, error = make_video(root / "video.mp4", 232, 48, 64, codec="h264", seed=5, fps=FPS)
    assert error == 0
    return root, truth


def highlight(*argv):
    """The command, in float32 unless told otherwise: the tests compare with float32 computations."""
    precision = [] if "--precision" in argv else ["--precision", "float32"]
    return main(["highlight", *map(str, argv), *precision, "--allow-random-weights", "--quiet"])


def direct_windows(truth, checkpoint, starts, c3d=None, vgg=None):
    """Scores (W, C) and attention (W, N, T) of the windows, from the decoded frames, without the
    extraction engine, the window assembler or the command (networks: the command's random ones)."""
    c3d, vgg = c3d or small_c3d(0, **SMALL_C3D), vgg or small_vgg(seed=1, **SMALL_VGG)
    model, meta = load_model(checkpoint)
    usable = truth[: len(truth) // 16 * 16]
    chunks = torch.from_numpy(usable).view(-1, 16, *truth.shape[1:])                      # (R, 16, H, W, 3)
    v = c3d.features(preprocess_c3d(chunks, C3D_MEAN_BGR), ["fc6"])["fc6"]                # (R, 16)
    a = vgg.features(preprocess_vgg(chunks[:, 0], size=32), ["fc8"])["fc8"]              # (R, 10) frames 16r
    inputs = torch.stack([v[s // 16:s // 16 + 3] for s in starts])
    attended = torch.stack([a[s // 16:s // 16 + 3] for s in starts])
    with torch.no_grad():
        out = model(inputs, attended)
    return out.scores.numpy(), out.attention.numpy(), meta


def test_highlight_end_to_end_matches_a_direct_computation(files, tmp_path):
    root, truth = files
    decoded = decode_all(root / "video.mp4")
    np.testing.assert_array_equal(decoded, truth)                      # lossless: the frames are known
    out = tmp_path / "report"
    assert highlight(root / "video.mp4", "--checkpoint", root / "run", "--out", out, "--threshold", 1.0,
                     "--clip", tmp_path / "clip.mp4") == 0
    data = json.loads((out / "highlights.json").read_text())
    assert {p.name for p in out.iterdir()} == {"highlights.json", "report.html", "figure2.png", "figure3.png",
                                               "timeline.png", "video.mp4", "clip.mp4"}   # the player's
    # 232 frames: complete chunks up to 224; windows of 48 at 0, 48, 96, 144, then one ending at 224
    starts = [w["start_frame"] for w in data["windows"]]
    assert starts == [0, 48, 96, 144, 176] and data["frames_read"] == 224 and data["num_frames"] == 232
    assert data["duration"] == pytest.approx(232 / FPS)
    scores, attention, meta = direct_windows(truth, root / "run" / "best.pt", starts)
    expected_top = np.argsort(-scores.mean(0), kind="stable")[:5]
    assert [c["class"] for c in data["top_classes"]] == [meta["class_names"][i] for i in expected_top]
    np.testing.assert_allclose([c["score"] for c in data["top_classes"]], scores.mean(0)[expected_top],
                               atol=1e-5)
    for w, window in enumerate(data["windows"]):
        item = window["attention"][0]
        assert item["frames"] == [window["start_frame"] + 16 * k for k in range(3)]
        np.testing.assert_allclose(item["times"], np.asarray(item["frames"]) / FPS, atol=1e-6)
        assert all(0 <= t < data["duration"] for t in item["times"])
        np.testing.assert_allclose(np.sum(item["step_weights"], axis=1), 1.0, atol=1e-5)  # Eq. 4
        np.testing.assert_allclose(item["step_weights"], attention[w], atol=1e-5)
        np.testing.assert_allclose(item["frame_weights"], attention[w].mean(0), atol=1e-5)
    frames = data["frames"][0]
    assert frames["frames"] == sorted(frames["frames"]) == list(range(0, 224, 16))
    # frames 176 and 192 are read by two windows: their weight is the mean of both
    by_frame = {}
    for w, start in enumerate(starts):
        for k in range(3):
            by_frame.setdefault(start + 16 * k, []).append(attention[w, :, k].mean())
    np.testing.assert_allclose(frames["weights"], [np.mean(by_frame[f]) for f in frames["frames"]], atol=1e-5)
    assert len(by_frame[176]) == 2
    # moments: the runs of attended frames at or above 1.0 × uniform, at most 5, in whole chunks
    moments = data["moments"]
    assert 1 <= len(moments) <= 5
    hot = {f for f, d in zip(frames["frames"], frames["density"], strict=True) if d >= 1.0}
    for m in moments:
        assert set(range(m["start_frame"], m["end_frame"], 16)) <= hot
        assert m["start_time"] == pytest.approx(m["start_frame"] / FPS)
        assert m["end_time"] == pytest.approx(m["end_frame"] / FPS)
    # the clip holds the moments' frames in time order (nearest true frame of each decoded clip frame)
    clip = decode_all(tmp_path / "clip.mp4").reshape(-1, 48 * 64 * 3).astype(np.float64)      # (K, P)
    wanted = [f for m in sorted(moments, key=lambda m: m["start_frame"])
              for f in range(m["start_frame"], m["end_frame"])]
    assert len(clip) == len(wanted)
    flat = truth.reshape(len(truth), -1).astype(np.float64)                                  # (232, P)
    distance = (clip ** 2).sum(1)[:, None] + (flat ** 2).sum(1)[None] - 2 * clip @ flat.T     # (K, 232)
    assert distance.argmin(axis=1).tolist() == wanted


def test_overlapping_windows_average_every_frame_they_share(files, tmp_path):
    root, truth = files
    out = tmp_path / "r"
    assert highlight(root / "video.mp4", "--checkpoint", root / "run" / "best.pt", "--out", out,
                     "--stride", 32) == 0
    data = json.loads((out / "highlights.json").read_text())
    starts = [w["start_frame"] for w in data["windows"]]
    assert starts == [0, 32, 64, 96, 128, 160, 176]                    # 160 + 48 < 224: one more at 176
    _, attention, _ = direct_windows(truth, root / "run" / "best.pt", starts)
    sums, counts = np.zeros(14), np.zeros(14)
    for w, start in enumerate(starts):
        for k in range(3):
            sums[start // 16 + k] += attention[w, :, k].mean()
            counts[start // 16 + k] += 1
    np.testing.assert_allclose(data["frames"][0]["weights"], sums / counts, atol=1e-5)
    np.testing.assert_allclose(data["frames"][0]["density"], 3 * sums / counts, atol=1e-4)


def tiny_checkpoint(path, input_source="c3d_fc6", attended_source="vgg_obj_fc8", input_dim=16,
                    attended_dim=10):
    model_args = dict(input_dim=input_dim, attended_dim=attended_dim, num_classes=4, hidden_dim=8,
                      match_dim=6)
    model = AttentionLSTM(**model_args, generator=torch.Generator().manual_seed(0))
    save_checkpoint(path, {"config": {}, "model_args": model_args, "model": model.state_dict(),
                           "class_names": list("abcd"), "input_source": input_source,
                           "attended_source": attended_source, "iteration": 0,
                           "spec": {"frames": 48, "steps": 3, "attended_per_step": 1}})
    return path


def one_line_error(capsys, argv, expected):
    code = main(["highlight", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("alstm highlight: error: ") and expected in err, err


def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys):
    root, _ = files
    ckpt = root / "run" / "best.pt"
    common = ["--allow-random-weights", "--quiet"]
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    one_line_error(capsys, [tmp_path / "notes.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", *common],
                   "notes.mp4: cannot open as a video")
    truncate(root / "video.mp4", tmp_path / "head.mp4", 0.02)           # the index survives, no frame
    one_line_error(capsys, [tmp_path / "head.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", *common],
                   "head.mp4")
    make_video(tmp_path / "short.mp4", 40, 48, 64, fps=FPS)
    one_line_error(capsys, [tmp_path / "short.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", *common],
                   "the video has 40 frames, fewer than one window of 48 frames")
    wide = tiny_checkpoint(tmp_path / "wide.pt", input_dim=99)
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", wide, "--out", tmp_path / "a", *common],
                   "reads c3d_fc6 of dimension 99, but the c3d network gives 16")
    salient = tiny_checkpoint(tmp_path / "salient.pt", attended_source="salient", attended_dim=1)
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", salient, "--out", tmp_path / "a", *common],
                   "source 'salient' cannot be extracted from a video")
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", "--quiet"],
                   "no weight file for c3d, vgg_obj")
    (tmp_path / "file").write_text("")
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", ckpt, "--out", tmp_path / "file" / "r",
                            *common], "cannot write files to")
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", "--stride", 20,
                            *common], "--stride 20: give a multiple of 16")
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", ckpt, "--out", tmp_path / "a", "--vgg", "act",
                            *common], "--vgg act: write FAMILY=WEIGHTS")
    other = tiny_checkpoint(tmp_path / "other.pt", attended_source="vgg_mine_fc8")
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", other, "--out", tmp_path / "a", *common],
                   "no VGG-19 family mine: the families are obj, sce, act")
    assert not (tmp_path / "a" / "highlights.json").exists()


def write_weights(folder, seed=7):
    """Caffe files (written by the protobuf package) for the small C3D and VGG-19; their (name, sha256)."""
    from helpers.caffe_files import net_bytes, network_layers

    from caffe_models import file_sha256

    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    aliases = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    c3d, vgg = small_c3d(0, **SMALL_C3D), small_vgg(seed=1, **SMALL_VGG)
    (folder / "c3d.caffemodel").write_bytes(
        net_bytes(network_layers(c3d, names=aliases, schema="c3d", rng=rng), schema="c3d"))
    (folder / "vgg.caffemodel").write_bytes(net_bytes(network_layers(vgg, rng=rng)))
    return {name: f"{name} (sha256 {file_sha256(folder / name)})"
            for name in ("c3d.caffemodel", "vgg.caffemodel")}


def test_weights_recorded_with_the_training_features_are_found_by_name_and_hash(files, tmp_path, capsys):
    from caffe_models import load_caffemodel
    from fuel_datasets import FeatureWriter

    root, truth = files
    recorded = write_weights(tmp_path / "weights")
    data = tmp_path / "features.h5"             # the checkpoint's training file records its weights
    with FeatureWriter(data, class_names=list("abcd")) as writer:
        writer.set_source_info("c3d_fc6", weights=recorded["c3d.caffemodel"])
        writer.set_source_info("vgg_obj_fc8", weights=recorded["vgg.caffemodel"])
        writer.add_video("v", features={"c3d_fc6": np.zeros((3, 16), np.float32),
                                        "vgg_obj_fc8": np.zeros((6, 10), np.float32)},
                         frame_index={"c3d_fc6": np.arange(0, 48, 16), "vgg_obj_fc8": np.arange(0, 48, 8)},
                         num_frames=48, fps=25.0, targets=0, split="train")
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    payload = torch.load(ckpt, weights_only=True)
    payload["config"] = {"data": str(data)}
    save_checkpoint(ckpt, {k: v for k, v in payload.items() if k not in ("format", "format_version")})
    out = tmp_path / "r"
    assert main(["highlight", str(root / "video.mp4"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--quiet", "--weights-dir", str(tmp_path / "weights")]) == 0
    result = json.loads((out / "highlights.json").read_text())
    assert result["random_weights"] == []
    assert result["extractors"] == {"c3d": recorded["c3d.caffemodel"], "vgg_obj": recorded["vgg.caffemodel"]}
    c3d, vgg = small_c3d(0, **SMALL_C3D), small_vgg(seed=1, **SMALL_VGG)
    load_caffemodel(c3d, tmp_path / "weights" / "c3d.caffemodel")
    load_caffemodel(vgg, tmp_path / "weights" / "vgg.caffemodel")
    starts = [w["start_frame"] for w in result["windows"]]
    _, attention, _ = direct_windows(truth, ckpt, starts, c3d, vgg)
    for w, window in enumerate(result["windows"]):
        np.testing.assert_allclose(window["attention"][0]["step_weights"], attention[w], atol=1e-5)
    # a file of that name but other content is not used
    (tmp_path / "weights" / "vgg.caffemodel").write_bytes(b"\0" * 64)
    capsys.readouterr()
    one_line_error(capsys, [root / "video.mp4", "--checkpoint", ckpt, "--out", out, "--quiet",
                            "--weights-dir", tmp_path / "weights"], "no weight file for vgg_obj")


@pytest.mark.parametrize("precision", ["bfloat16", "auto"])
def test_highlight_precision_is_recorded_and_bfloat16_stays_close(files, tmp_path, precision, monkeypatch,
                                                                   capsys):
    """bfloat16 features (8-bit mantissa) move the window scores by well under 5e-2 here; ``auto`` on a
    CPU without native bfloat16 is float32."""
    import reproduce.runtime.precision as precision_module

    monkeypatch.setattr(precision_module, "native_bfloat16", lambda flags=None: False)
    root, truth = files
    out = tmp_path / "report"
    assert highlight(root / "video.mp4", "--checkpoint", root / "run", "--out", out, "--precision",
                     precision) == 0
    data = json.loads((out / "highlights.json").read_text())
    expected = "bfloat16 autocast (requested)" if precision == "bfloat16" else "float32 (auto)"
    assert data["precision"] == f"c3d {expected}; vgg_obj {expected}"
    assert f"precision: {data['precision']}" in capsys.readouterr().out
    starts = [w["start_frame"] for w in data["windows"]]
    scores, _, meta = direct_windows(truth, root / "run" / "best.pt", starts)
    by_class = {c["class"]: c["score"] for c in data["top_classes"]}
    for name, value in by_class.items():
        assert abs(value - scores.mean(0)[meta["class_names"].index(name)]) <= 5e-2


def test_the_python_api_writes_what_the_command_writes(files, tmp_path):
    """`highlight_video` → `VideoHighlights`: typed results, and the command's files byte for byte."""
    root, _ = files
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    assert highlight(root / "video.mp4", "--checkpoint", root / "run", "--out", cli_out, "--stride", 32,
                     "--threshold", 1.02, "--clip", cli_out / "clip.mp4") == 0
    with pytest.warns(UserWarning, match="c3d, vgg_obj run on RANDOM weights"):   # said, without `warn`
        h = highlight_video(str(root / "video.mp4"), [str(root / "run")], stride=32,
                            settings=HighlightSettings(threshold=1.02), device="cpu", precision="float32",
                            allow_random_weights=True)
    assert isinstance(h, VideoHighlights) and h.moments and h.top_classes[0].score >= h.top_classes[-1].score
    api_out.mkdir()
    h.write_json(str(api_out / "highlights.json"))
    assert (api_out / "highlights.json").read_bytes() == (cli_out / "highlights.json").read_bytes()
    assert h.write_summary_video(str(api_out / "clip.mp4")) == sum(m.end_frame - m.start_frame
                                                                    for m in h.moments)
    written = h.write_report(str(api_out), clip=str(api_out / "clip.mp4"))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["figure2.png", "figure3.png", "report.html",
                                                            "timeline.png", "video.mp4"]
    assert (api_out / "report.html").read_bytes() == (cli_out / "report.html").read_bytes()
    assert decode_all(api_out / "clip.mp4").shape[0] == decode_all(cli_out / "clip.mp4").shape[0]
