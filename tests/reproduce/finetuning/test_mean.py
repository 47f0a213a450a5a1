"""C3D's volume mean (reproduce.finetuning.mean, `alstm finetune mean`) against a direct numpy computation:
compute_volume_mean_from_list's choice of chunks (the first line only sizes the datum; then every
dropping-rate-th), BGR order, (3, 16, 128, 171), written as a C3D v1.0 .binaryproto that load_mean reads."""

import numpy as np
import pytest
from helpers.videos import write_video

from caffe_models import load_mean
from caffe_models.preprocess import C3D_RESIZE
from reproduce.cli import main
from reproduce.finetuning.clips import SampleTable, list_samples
from reproduce.finetuning.mean import chosen_chunks, chunk_list, volume_mean

H, W = C3D_RESIZE


def test_the_tools_choice_of_chunks():
    assert chosen_chunks(25, 10) == [10, 20]          # lines 2..: c = 1, 2, …; summed when c % 10 == 0
    assert chosen_chunks(4, 1) == [1, 2, 3]           # never the first line
    assert chosen_chunks(1, 1) == []


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two lossless videos already at 128×171 (no resampling): random frames, known exactly."""
    root = tmp_path_factory.mktemp("mean")
    rng = np.random.default_rng(0)
    frames = {name: rng.integers(0, 256, (40, H, W, 3), dtype=np.uint8) for name in ("a", "b")}
    for name, f in frames.items():
        write_video(root / f"{name}.mkv", f, "ffv1")
    return root, frames


def direct(frames, chunks):
    """numpy: the mean of the chunks' 16 frames, BGR, as (3, 16, H, W)."""
    clips = [frames[name][start:start + 16, :, :, ::-1].transpose(3, 0, 1, 2).astype(np.float64)
             for name, start in chunks]
    return np.mean(clips, axis=0)


@pytest.mark.parametrize("dropping, workers", [(1, 0), (2, 2)])
def test_the_mean_of_a_list_is_the_direct_mean(videos, tmp_path, dropping, workers):
    root, frames = videos
    chunks = [("a", 0), ("a", 16), ("b", 3), ("b", 20), ("a", 24), ("b", 0)]
    lst = tmp_path / "train.lst"
    lst.write_text("".join(f"{root}/{name}.mkv {start} 0\n" for name, start in chunks))
    result = volume_mean(tmp_path / "mean.binaryproto", list_file=lst, dropping_rate=dropping,
                         workers=workers)
    used = [chunks[c] for c in chosen_chunks(len(chunks), dropping)]
    assert result.chunks == len(used) and result.available == 6 and result.shape == (3, 16, H, W)
    mean = load_mean(tmp_path / "mean.binaryproto")
    assert mean.shape == (3, 16, H, W) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, direct(frames, used), rtol=0, atol=1e-4)


def test_a_datasets_samples_give_their_consecutive_chunks(videos, tmp_path):
    root, _ = videos
    lst = tmp_path / "l.lst"
    lst.write_text(f"{root}/a.mkv 0 0\n")
    sample = list_samples(lst).train[0]
    table = SampleTable([sample.__class__(sample.path, "video", 5, 35, 0, "s"),
                         sample.__class__(sample.path, "video", 0, 15, 0, "short")])
    assert chunk_list(table) == [(0, 5), (0, 21)]     # non-overlapping, complete; 15 frames give none


def test_the_command_writes_the_mean(videos, tmp_path, capsys):
    root, frames = videos
    lst = tmp_path / "train.lst"
    lst.write_text(f"{root}/a.mkv 0 0\n{root}/b.mkv 8 1\n")
    out = tmp_path / "m.binaryproto"
    assert main(["finetune", "mean", "--list", str(lst), "--out", str(out), "--dropping-rate", "1",
                 "--quiet", "--workers", "0"]) == 0
    assert f"{out}: the mean of 1 of 2 clips" in capsys.readouterr().out
    np.testing.assert_allclose(load_mean(out), direct(frames, [("b", 8)]), atol=1e-4)
    assert main(["finetune", "mean", "--list", str(lst), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lower --dropping-rate" in err and len(err.splitlines()) == 1
