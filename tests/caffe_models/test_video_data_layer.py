"""caffe_models.preprocess_c3d at any crop offset, mirrored or not, against the index arithmetic of C3D
v1.0's ``video_data_layer.cpp`` written out in numpy:

    top[((c·L + l)·crop + h)·crop + w']  =  data[((c·L + l)·H + h + h_off)·W + w + w_off] − mean[same index]
    with w' = crop − 1 − w when mirrored, else w

on a datum already at 128×171 (no resampling), so the layer's arithmetic alone is compared."""

import numpy as np
import pytest

from caffe_models import preprocess_c3d
from caffe_models.preprocess import C3D_RESIZE

H, W = C3D_RESIZE
CROP, L = 112, 16


def caffe_layer(datum, mean, h_off, w_off, mirror):
    """The loops of VideoDataLayerPrefetch over flat buffers: datum and mean (3·L·H·W,) → (3, L, 112, 112)."""
    data, mean = datum.reshape(-1), mean.reshape(-1)
    top = np.empty(3 * L * CROP * CROP, np.float32)
    c, l, h, w = np.meshgrid(np.arange(3), np.arange(L), np.arange(CROP), np.arange(CROP), indexing="ij")
    out_w = CROP - 1 - w if mirror else w
    top_index = ((c * L + l) * CROP + h) * CROP + out_w
    data_index = ((c * L + l) * H + h + h_off) * W + w + w_off
    top[top_index.ravel()] = data[data_index.ravel()].astype(np.float32) - mean[data_index.ravel()]
    return top.reshape(3, L, CROP, CROP)


@pytest.mark.parametrize("h_off, w_off, mirror", [(0, 0, False), (15, 58, True), (8, 29, False),
                                                  (3, 41, True), (16, 59, False)])
def test_preprocess_c3d_is_the_layers_crop_mean_and_mirror(h_off, w_off, mirror):
    rng = np.random.default_rng(h_off * 100 + w_off)
    frames = rng.integers(0, 256, (1, L, H, W, 3), dtype=np.uint8)            # RGB, already 128×171
    mean = rng.uniform(0, 255, (3, L, H, W)).astype(np.float32)               # per voxel, BGR
    datum = frames[0, ..., ::-1].transpose(3, 0, 1, 2)                        # the datum: BGR (3, L, H, W)
    ours = preprocess_c3d(frames, mean, crop_offset=(h_off, w_off), mirror=mirror)[0].numpy()
    np.testing.assert_array_equal(ours, caffe_layer(datum, mean, h_off, w_off, mirror))
