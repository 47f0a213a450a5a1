"""The release's networks at reduced width, for extraction and highlighting in a fraction of a second,
and the extraction engine's in-memory writer.

`small_c3d` and `small_vgg` are the one definition of the small networks; a test that needs other sizes
(the highlight tests, whose checkpoint reads 16/6-wide C3D and 12/10-wide VGG-19 features) passes them.
`use_small_networks` makes the command line (`reproduce.extraction.networks`) build them.
"""

from __future__ import annotations

import numpy as np
import torch

import reproduce.extraction.networks as networks
from caffe_models import C3D, VGG19, preprocess_c3d, preprocess_vgg
from caffe_models.preprocess import C3D_MEAN_BGR

VGG_SIZE = 32


def small_c3d(seed=0, num_classes=5, *, width=2, fc_dim=16):
    """C3D with ``width`` channels in each of its 8 convolutions and ``fc_dim`` wide fc6/fc7."""
    return C3D(num_classes, conv_channels=(width,) * 8, fc_dim=fc_dim,
               generator=torch.Generator().manual_seed(seed))


def small_vgg(num_classes=6, seed=1, *, width=2, fc_dim=16):
    """VGG-19 with ``width`` channels in each of its 5 blocks, ``fc_dim`` wide fc6/fc7, 32² images."""
    return VGG19(num_classes, conv_channels=(width,) * 5, fc_dim=fc_dim, image_size=VGG_SIZE,
                 generator=torch.Generator().manual_seed(seed))


def use_small_networks(patch, c3d=None, vgg=None):
    """The command line builds small networks (with the seeds the release builders would get). ``patch``:
    a ``pytest.MonkeyPatch``; ``c3d``, ``vgg``: `small_c3d`'s and `small_vgg`'s keyword arguments (None:
    their defaults); a ``num_classes`` in ``vgg`` fixes fc8's width (else the family's, as the release)."""
    c3d, vgg = dict(c3d or {}), dict(vgg or {})
    patch.setattr(networks, "new_c3d", lambda seed, num_classes=None: small_c3d(
        seed, **{**c3d, **({"num_classes": num_classes} if num_classes else {})}))
    patch.setattr(networks, "new_vgg", lambda n, seed: small_vgg(**{"num_classes": n, **vgg}, seed=seed))


def direct_features(frames, c3d, vggs, mean=C3D_MEAN_BGR, layers=("fc6", "fc8")):
    """The sources of one video computed without the pipeline: (T, H, W, 3) true frames → networks."""
    n = len(frames) // 16
    clips = frames[: n * 16].reshape(n, 16, *frames.shape[1:])  # (n, 16, H, W, 3)
    attended = frames[np.arange(0, n * 16, 8)]  # one frame every 8: (2n, H, W, 3)
    out = {}
    with torch.no_grad():
        for flip in (False, True):
            suffix = "_flip" if flip else ""
            c = np.ascontiguousarray(clips[:, :, :, ::-1]) if flip else clips  # mirror the width axis
            a = np.ascontiguousarray(attended[:, :, ::-1]) if flip else attended
            feats = c3d.features(preprocess_c3d(c, mean), [f"{k}-1" for k in layers])
            for k in layers:
                out[f"c3d_{k}{suffix}"] = feats[f"{k}-1"].numpy()
            for family, vgg in vggs.items():
                feats = vgg.features(preprocess_vgg(a, size=VGG_SIZE), list(layers))
                for k in layers:
                    out[f"vgg_{family}_{k}{suffix}"] = feats[k].numpy()
    return out


def assert_features_close(stored, expected):
    scale = np.abs(expected).max() + 1e-6
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-5 * scale)


class ListWriter:
    """A writer kept in memory, for the engine's own tests."""

    def __init__(self):
        self.videos, self.info = {}, {}

    def has_video(self, vid):
        return vid in self.videos

    def set_source_info(self, source, **info):
        self.info[source] = info

    def add_video(self, vid, **kwargs):
        self.videos[vid] = kwargs
