"""The README's "Python API" section, run as written: videos encoded here, weight and mean files
written here (small networks of the release's layout, so that it runs in seconds), then the block is
executed unchanged in their folder and its results are checked."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.caffe_files import mean_bytes, net_bytes, network_layers
from helpers.networks import small_c3d, small_vgg, use_small_networks
from helpers.videos import make_video

from fuel_datasets import open_dataset

README = ROOT / "README.md"


def python_api_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one python block"
    return blocks[0]


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """What the block expects beside it: videos/, labels.csv (video,label,split), the weight and mean
    files, my.mp4."""
    use_small_networks(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    rows, splits = ["video,label,split"], ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    for k in range(8):
        make_video(tmp_path / "videos" / f"v{k}.mp4", 200, 24, 32, seed=k, fps=25)
        rows.append(f"v{k}.mp4,{'ab'[k % 2]},{splits[k]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    make_video(tmp_path / "my.mp4", 224, 24, 32, seed=11, fps=25)
    rng = np.random.default_rng(0)
    names = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    (tmp_path / "c3d.caffemodel").write_bytes(
        net_bytes(network_layers(small_c3d(), names=names, schema="c3d", rng=rng), schema="c3d"))
    (tmp_path / "vgg_obj.caffemodel").write_bytes(net_bytes(network_layers(small_vgg(1000), rng=rng)))
    mean = rng.uniform(90, 130, (3, 16, 128, 171)).astype(np.float32)
    (tmp_path / "c3d_mean.binaryproto").write_bytes(mean_bytes(mean, "c3d"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


def test_the_python_api_section_runs_as_written(user_folder, capsys):
    scope = {"__name__": "__main__"}
    exec(compile(python_api_block(), "README.md (Python API)", "exec"), scope)
    out = capsys.readouterr().out.splitlines()
    feats, result, h = scope["feats"], scope["result"], scope["h"]
    assert sorted(feats.written) == [f"v{k}" for k in range(8)] and not feats.failed
    assert out[0].startswith("8 videos at ") and out[0].endswith("failed: {}")
    with open_dataset(user_folder / "features.h5") as ds:
        assert ds.splits == {"train": ["v0", "v1", "v2", "v3"], "valid": ["v4", "v5"], "test": ["v6", "v7"]}
        assert ds.class_names == ["a", "b"] and "RANDOM" not in ds.source_info("c3d_fc6")["weights"]
    assert out[1] == "{'train': 4, 'valid': 2, 'test': 2, 'none': 0}"
    assert (user_folder / "runs" / "obj_fc8" / "best.pt").is_file()
    assert result.num_videos == 2 and 0 <= result.accuracy <= 1
    assert out[2] == f"accuracy {result.accuracy:.3f}, mAP {result.mAP:.3f} over 2 test videos"
    assert h.random_weights == () and h.num_frames == 224 and h.top_classes[0].name in ("a", "b")
    # found where extraction read them: the same weights and mean cube as the training features
    with open_dataset(user_folder / "features.h5") as ds:
        assert h.extractors == {"c3d": ds.source_info("c3d_fc6")["weights"],
                                "vgg_obj": ds.source_info("vgg_obj_fc8")["weights"]}
        assert ds.source_info("c3d_fc6")["mean_path"] == str(user_folder / "c3d_mean.binaryproto")
    saved = (user_folder / "report" / "highlights.json").read_text()
    assert json.loads(saved) == json.loads(json.dumps(h.to_json()))
    assert (user_folder / "report" / "report.html").is_file()
