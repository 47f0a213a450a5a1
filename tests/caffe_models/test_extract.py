"""caffe_models.extract, the streaming engine: stored features against a direct run of the same networks
on the true frames, the automatic precision choice, channels_last, bad arguments, and writing through
the project's FeatureWriter.

The networks are the release architectures at reduced width (random weights), so a whole extraction
takes well under a second.
"""

import numpy as np
import pytest
import torch
from helpers.networks import ListWriter, assert_features_close, direct_features, small_c3d, small_vgg

from caffe_models import preprocess_c3d
from caffe_models.extract import FeatureExtractor, extract_videos
from caffe_models.preprocess import C3D_MEAN_BGR
from fuel_datasets import FeatureWriter, open_dataset

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


# ---------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size, workers", [(1, 1), (3, 2)])
def test_stored_features_equal_a_direct_run_on_the_true_frames(clip_videos, batch_size, workers):
    folder, truths = clip_videos
    c3d, vgg = small_c3d(), small_vgg()
    extractor = FeatureExtractor(c3d, {"obj": vgg})
    writer = ListWriter()
    videos = [("odd", folder / "odd.mkv"), ("h264", folder / "h264.mp4")]
    summary = extract_videos(videos, writer, extractor, batch_size=batch_size, workers=workers,
                             progress=False, split="valid")
    assert summary.written == ["odd", "h264"] and summary.failed == {} and summary.frames == 75
    for vid, truth in truths.items():
        stored = writer.videos[vid]
        expected = direct_features(truth, c3d, {"obj": vgg})
        assert set(stored["features"]) == set(expected)
        for source, value in expected.items():
            assert_features_close(stored["features"][source], value)
        n = len(truth) // 16
        np.testing.assert_array_equal(stored["frame_index"]["c3d_fc6"], 16 * np.arange(n))
        np.testing.assert_array_equal(stored["frame_index"]["vgg_obj_fc8"], 8 * np.arange(2 * n))
        assert stored["num_frames"] == len(truth) and stored["targets"] is None and stored["split"] == "valid"
    assert writer.videos["odd"]["fps"] == pytest.approx(30.0)
    assert writer.videos["h264"]["fps"] == pytest.approx(25.0)
    # the flip is a real mirror: features differ from the unflipped ones
    odd = writer.videos["odd"]["features"]
    assert not np.allclose(odd["c3d_fc6"], odd["c3d_fc6_flip"])
    info = writer.info["c3d_fc6"]
    assert info["layer"] == "fc6-1" and info["chunk_length"] == 16 and info["stride"] == 16
    assert info["weights"] == "random initialisation (seed 0); not real C3D features"
    flip_info = writer.info["vgg_obj_fc8_flip"]
    assert flip_info["stride"] == 8 and flip_info["flipped"] is True


def test_auto_precision_keeps_low_precision_only_within_tolerance(clip_videos):
    folder, truths = clip_videos
    truth = truths["odd"]
    results = {}
    for tolerance in (0.0, 1.0):
        c3d = small_c3d()
        extractor = FeatureExtractor(c3d, None, ("fc6",), flip=False, precision="auto",
                                     auto_dtype=torch.bfloat16, tolerance=tolerance)
        writer = ListWriter()
        extract_videos([("odd", folder / "odd.mkv")], writer, extractor, batch_size=1, progress=False)
        stored = writer.videos["odd"]["features"]["c3d_fc6"]
        results[tolerance] = (stored, writer.info["c3d_fc6"]["precision"])
    clips = torch.from_numpy(truth[:32].reshape(2, 16, *truth.shape[1:]))
    with torch.no_grad():
        exact = small_c3d().features(preprocess_c3d(clips, C3D_MEAN_BGR), ["fc6"])["fc6"].numpy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = small_c3d().features(preprocess_c3d(clips, C3D_MEAN_BGR), ["fc6"])["fc6"].float().numpy()
    assert np.abs(low - exact).max() > 0  # bfloat16 does change the features
    # tolerance 0: bfloat16 rejected on the first batch, everything float32
    assert results[0.0][1].startswith("float32 (auto: bfloat16 deviates")
    assert_features_close(results[0.0][0], exact)
    # tolerance 1: the first batch (the trial) is float32, the next one bfloat16
    assert results[1.0][1].startswith("bfloat16 autocast (auto: bfloat16 deviates")
    assert_features_close(results[1.0][0][0], exact[0])
    np.testing.assert_allclose(results[1.0][0][1], low[1], rtol=1e-3, atol=1e-3 * np.abs(low).max())


def test_channels_last_gives_the_features_of_contiguous_tensors(clip_videos):
    _, truths = clip_videos
    truth = truths["h264"]
    clips = [torch.from_numpy(truth[:16]), torch.from_numpy(truth[16:32])]
    c3d, vgg = small_c3d(), small_vgg()
    plain = FeatureExtractor(c3d, {"obj": vgg}, channels_last=False)(clips)
    assert not c3d.conv1a.weight.is_contiguous(memory_format=torch.channels_last_3d)
    fast = FeatureExtractor(c3d, {"obj": vgg})(clips)
    assert c3d.conv1a.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert vgg.conv1_1.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.keys() == fast.keys()
    for source, value in plain.items():
        assert_features_close(fast[source], value)


def test_extractor_rejects_unknown_layers_and_precisions():
    from caffe_models.errors import CaffeModelError

    with pytest.raises(CaffeModelError, match="choose among fc6, fc7, fc8"):
        FeatureExtractor(small_c3d(), None, ("pool5",))
    with pytest.raises(CaffeModelError, match="precision 'half'"):
        FeatureExtractor(small_c3d(), None, precision="half")
    with pytest.raises(CaffeModelError, match="no network"):
        FeatureExtractor(None, {})


def test_writer_protocol_is_the_project_writer(tmp_path, clip_videos):
    """The engine writes through FeatureWriter itself (not only the in-memory stand-in)."""
    folder, truths = clip_videos
    c3d = small_c3d()
    with FeatureWriter(tmp_path / "f.h5", class_names=["a"]) as writer:
        extract_videos([("h264", folder / "h264.mp4")], writer, FeatureExtractor(c3d, None, ("fc8",)),
                       progress=False)
    expected = direct_features(truths["h264"], c3d, {}, layers=("fc8",))
    with open_dataset(tmp_path / "f.h5") as ds:
        assert set(ds.feature_sources) == {"c3d_fc8", "c3d_fc8_flip"}
        assert_features_close(ds.read("c3d_fc8_flip", "h264"), expected["c3d_fc8_flip"])
        np.testing.assert_array_equal(ds.frame_index("c3d_fc8_flip", "h264"), [0, 16])


