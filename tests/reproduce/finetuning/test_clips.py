"""Where fine-tuning's clips come from (reproduce.finetuning.clips): C3D list files and their one-line
errors, image lists, built datasets (whole videos, and ActivityNet segments placed with the annotation
file), and frames read from videos (sought or decoded from the start) and frame folders."""

import numpy as np
import pytest
from helpers.activitynet import anet_video, write_annotations
from helpers.networks import use_small_networks
from helpers.videos import decode_all, moving_frames, write_video
from PIL import Image

from fuel_datasets import build_activitynet
from reproduce.cli import main
from reproduce.finetuning.clips import (
    FinetuneInputError,
    _decode,
    dataset_samples,
    image_samples,
    list_samples,
    read_frames,
)

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 40-frame lossless video, a 20-frame folder of JPEGs (000001.jpg …) and two images."""
    root = tmp_path_factory.mktemp("media")
    write_video(root / "clip.mkv", moving_frames(40, 24, 32, seed=1), "ffv1")
    (root / "frames").mkdir()
    for k in range(1, 21):
        Image.fromarray(moving_frames(1, 24, 32, seed=k)[0]).save(root / "frames" / f"{k:06d}.jpg")
    for name in ("a.png", "b.png"):
        Image.fromarray(moving_frames(1, 20, 20, seed=3)[0]).save(root / name)
    return root


def write(path, text):
    path.write_text(text)
    return path


def test_list_lines_become_clips(media, tmp_path):
    lst = write(tmp_path / "train.lst", f"{media}/clip.mkv 0 1\n{media}/clip.mkv 24 0\n\n{media}/frames 1 2\n"
                f"{media}/frames 5 1\n")
    samples = list_samples(lst, valid=write(tmp_path / "test.lst", f"{media}/frames 3 0\n"))
    train = samples.train
    assert samples.num_classes == 3 and len(train) == 4 and len(samples.valid) == 1
    assert [(train[i].kind, train[i].first, train[i].frames, train[i].label) for i in range(4)] == \
        [("video", 0, 16, 1), ("video", 24, 16, 0), ("frames", 0, 16, 2), ("frames", 4, 16, 1)]
    assert train[3].path == f"{media}/frames"
    assert train[1].where == f"{lst}:2"
    assert list_samples(lst, num_classes=5).num_classes == 5


def test_relative_paths_are_read_from_the_list_folder(media):
    lst = write(media / "rel.lst", "clip.mkv 0 0\n")
    assert list_samples(lst).train[0].path.endswith("clip.mkv")


@pytest.mark.parametrize("line, message", [
    ("{m}/clip.mkv 0", "is not '<video or frame folder> <start_frame> <label>'"),
    ("{m}/clip.mkv zero 1", "is not '<video or frame folder> <start_frame> <label>'"),
    ("{m}/nothing.mkv 0 1", "no such video file or frame folder"),
    ("{m}/clip.mkv 30 1", "has 40 frames, too short for 16 frames from frame 30"),
    ("{m}/frames 10 1", "has no 000025.jpg: a clip needs the 16 frames 10..25"),
    ("{m}/frames 0 1", "a frame folder's frames are numbered from 1"),
    ("{m}/clip.mkv 0 7", "label 7 is outside the 3 classes (0..2)"),
    ("{m}/clip.mkv 0 -1", "label -1 is outside the 3 classes"),
])
def test_list_errors_are_one_line_naming_the_line(media, tmp_path, line, message):
    lst = write(tmp_path / "bad.lst", f"{media}/clip.mkv 0 2\n" + line.format(m=media) + "\n")
    with pytest.raises(FinetuneInputError) as info:
        list_samples(lst, num_classes=3)
    text = str(info.value)
    assert text.startswith(f"{lst}:2: ") and message in text and "\n" not in text


def test_an_empty_or_missing_list_is_one_line(tmp_path):
    with pytest.raises(FinetuneInputError, match="no line"):
        list_samples(write(tmp_path / "empty.lst", "\n"))
    with pytest.raises(FinetuneInputError, match="cannot be read"):
        list_samples(tmp_path / "none.lst")


def test_the_command_prints_a_list_error_as_one_line(media, tmp_path, capsys):
    lst = write(tmp_path / "bad.lst", f"{media}/clip.mkv 0\n")
    assert main(["finetune", "mean", "--list", str(lst), "--out", str(tmp_path / "m.binaryproto")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("alstm finetune: error: ") and f"{lst}:1:" in err and len(err.splitlines()) == 1


def test_image_lists(media, tmp_path):
    samples = image_samples(write(tmp_path / "im.txt", f"{media}/a.png 0\n{media}/b.png 1\n"))
    assert samples.num_classes == 2 and samples.train[1].kind == "image"
    assert read_frames(samples.train[0], 0, 1).shape == (1, 20, 20, 3)
    for text, message in (("a.png", "is not '<image> <label>'"), ("zz.png 1", "no such image")):
        with pytest.raises(FinetuneInputError, match=message):
            image_samples(write(tmp_path / "bad.txt", f"{media}/{text}\n"))


def test_frames_of_videos_and_folders(media):
    samples = list_samples(write(media / "io.lst", f"{media}/clip.mkv 20 0\n{media}/frames 2 0\n"))
    truth = decode_all(media / "clip.mkv")
    np.testing.assert_array_equal(read_frames(samples.train[0], 20, 16), truth[20:36])
    jpeg = np.asarray(Image.open(media / "frames" / "000003.jpg").convert("RGB"))
    np.testing.assert_array_equal(read_frames(samples.train[1], 2, 16)[0], jpeg)     # frame 3, 1-based
    with pytest.raises(FinetuneInputError, match="ends after 40 frames"):
        read_frames(samples.train[0], 30, 16)


@pytest.mark.parametrize("codec", ["h264", "h264_420"])
def test_seeking_gives_the_frames_of_decoding_from_the_start(tmp_path, codec):
    path = tmp_path / f"long.{'mp4'}"
    write_video(path, moving_frames(300, 32, 48, seed=4), codec, fps=30)
    for first in (64, 150, 284):
        sought = _decode(str(path), first, 16, seek=True)
        from_start = _decode(str(path), first, 16, seek=False)
        assert len(sought) == 16
        np.testing.assert_array_equal(np.stack(sought), np.stack(from_start))


# -- built datasets --------------------------------------------------------------------------------
FPS = 25
VIDEOS = {"v_aa": 96, "bb": 80, "v_cc": 64}              # frames at 25 fps (v_aa: 3.84 s)
DATABASE = {
    "aa": anet_video("training", 3.84, ((0.5, 2.5), "Surfing"), ((2.0, 3.5), "Skiing")),
    "bb": anet_video("training", 3.2, ((-0.2, 3.0), "Skiing")),
    "cc": anet_video("validation", 2.56, ((0.3, 2.3), "Surfing")),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """videos → `alstm extract` (small random networks) → `alstm dataset build activitynet`."""
    root = tmp_path_factory.mktemp("anet")
    videos = root / "videos"
    videos.mkdir()
    for k, (name, frames) in enumerate(VIDEOS.items()):
        write_video(videos / f"{name}.mkv", moving_frames(frames, 24, 32, seed=k), "ffv1", fps=FPS)
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch)
        assert main(["extract", str(videos), "--out", str(root / "videos.h5"), "--allow-random-weights",
                     "--quiet", "--precision", "float32"]) == 0
    annotations = write_annotations(root / "activity_net.v1-3.min.json", DATABASE)
    (root / "data").mkdir()
    build_activitynet(annotations, [str(root / "videos.h5")], root / "data" / "activitynet.h5", min_frames=16)
    return root


def test_activitynet_samples_start_at_their_segment(built):
    data = built / "data" / "activitynet.h5"
    samples = dataset_samples(data, built / "videos", annotations=built / "activity_net.v1-3.min.json")
    everything = {s.where.split()[-1]: s for t in (samples.train, samples.valid) for s in map(t.__getitem__,
                                                                                              range(len(t)))}
    assert samples.class_names == ("Skiing", "Surfing")
    expected = {"v_aa_0": (12, 50, 1), "v_aa_1": (50, 37, 0), "v_bb_0": (0, 75, 0)}
    assert set(everything) == set(expected)          # cc is in the validation subset: the test split
    for sample_id, (first, frames, label) in expected.items():
        s = everything[sample_id]
        assert (s.first, s.frames, s.label) == (first, frames, label), sample_id   # ⌊t0 · 25⌋
    assert everything["v_bb_0"].path.endswith("bb.mkv") and everything["v_aa_0"].path.endswith("v_aa.mkv")


def test_the_annotation_file_is_found_by_its_recorded_name(built, monkeypatch):
    data = built / "data" / "activitynet.h5"
    with pytest.raises(FinetuneInputError) as info:
        dataset_samples(data, built / "videos")
    assert "pass --annotations" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.chdir(built)                       # the recipe's layout: the JSON in the current folder
    assert len(dataset_samples(data, built / "videos").train) >= 2


def test_a_missing_video_is_one_line(built, tmp_path):
    (tmp_path / "v_aa.mkv").write_bytes((built / "videos" / "v_aa.mkv").read_bytes())
    with pytest.raises(FinetuneInputError) as info:
        dataset_samples(built / "data" / "activitynet.h5", tmp_path,
                        annotations=built / "activity_net.v1-3.min.json")
    assert "no video bb.<ext> or v_bb.<ext> in" in str(info.value)


def test_whole_video_files_need_no_annotations(built, tmp_path):
    labels = write(tmp_path / "labels.csv", "v_aa,x,train\nbb,y,train\nv_cc,x,valid\n")
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch)
        assert main(["extract", str(built / "videos"), "--out", str(tmp_path / "f.h5"), "--labels",
                     str(labels), "--allow-random-weights", "--quiet"]) == 0
    samples = dataset_samples(tmp_path / "f.h5", built / "videos")
    assert sorted((samples.train[i].first, samples.train[i].frames) for i in range(2)) == [(0, 80), (0, 96)]
    assert len(samples.valid) == 1 and samples.class_names == ("x", "y") and samples.source.endswith("f.h5")
