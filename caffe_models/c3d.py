"""C3D, the Sports-1M 3-D ConvNet of the C3D-v1.0 release, with Caffe's layer names.

Data flow of one batch (B clips of 16 frames; channels BGR, the mean cube subtracted, see
`preprocess_c3d`), as in `c3d_sport1m_feature_extractor_frm.prototxt`:

    clips (B, 3, 16, 112, 112)
      → conv1a (64)  → pool1 1×2×2 → (B, 64, 16, 56, 56)
      → conv2a (128) → pool2 2×2×2 → (B, 128, 8, 28, 28)
      → conv3a, conv3b (256) → pool3 → (B, 256, 4, 14, 14)
      → conv4a, conv4b (512) → pool4 → (B, 512, 2, 7, 7)
      → conv5a, conv5b (512) → pool5 → (B, 512, 1, 4, 4) → flatten (B, 8192)
      → fc6 (4096) → fc7 (4096) → fc8 (487 Sports-1M classes) → prob

Convolutions are 3×3×3, padding 1, stride 1, each followed by an in-place ReLU; fc6 and fc7 too.
Pools round up, as Caffe's `pool3d_layer.cpp` does (ceil((L − k)/s) + 1 windows, the last one clipped
at the border): on pool5's 7×7 input the windows are {0,1}, {2,3}, {4,5}, {6}. Earlier PyTorch ports
(DavideA/c3d-pytorch, MMAction2) pad pool5 by (0, 1, 1) in floor mode instead, which gives windows
{-1,0}, {1,2}, {3,4}, {5,6}: the same 4×4 shape but other values. Here every pool is
`MaxPool3d(k, k, ceil_mode=True)`.

The release names the fc layers `fc6-1`, `fc7-1`, `fc8-1`; they are aliases of `fc6`, `fc7`, `fc8` here
(both load and both can be read out). Its weight file uses the C3D-v1.0 protobuf schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import torch

from caffe_models.caffenet import CaffeSequential, build_layers

# (Caffe layer, conv: index into the channel widths | pool: kernel = stride (T, H, W)).
C3D_LAYERS = (
    ("conv1a", 0), ("pool1", (1, 2, 2)),
    ("conv2a", 1), ("pool2", (2, 2, 2)),
    ("conv3a", 2), ("conv3b", 3), ("pool3", (2, 2, 2)),
    ("conv4a", 4), ("conv4b", 5), ("pool4", (2, 2, 2)),
    ("conv5a", 6), ("conv5b", 7), ("pool5", (2, 2, 2)),
)
C3D_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
C3D_CLIP_SHAPE = (16, 112, 112)  # (T, H, W) of one input clip
C3D_NUM_CLASSES = 487  # Sports-1M
C3D_RELEASE_FILE = "conv3d_deepnetA_sport1m_iter_1900000"


class C3D(CaffeSequential):
    """C3D Sports-1M. Input (B, 3, 16, 112, 112) float BGR; `features()` reads any layer (see caffenet.py).

    `num_classes`, `conv_channels` (8 widths), `fc_dim` and `clip_shape` default to the release; smaller
    values build the same architecture at a size tests can afford. `device="meta"` builds it without
    memory (shapes only).
    """

    caffe_schema = "c3d"
    caffe_aliases = MappingProxyType({"fc6-1": "fc6", "fc7-1": "fc7", "fc8-1": "fc8"})
    release_file = C3D_RELEASE_FILE
    preprocess_hint = "prepare 16-frame clips with caffe_models.preprocess_c3d"

    def __init__(self, num_classes: int = C3D_NUM_CLASSES, *, conv_channels: Sequence[int] = C3D_CHANNELS,
                 fc_dim: int = 4096, clip_shape: Sequence[int] = C3D_CLIP_SHAPE,
                 generator: torch.Generator | None = None, device=None):
        if len(conv_channels) != len(C3D_CHANNELS):
            raise ValueError(f"C3D has {len(C3D_CHANNELS)} convolutions; got {len(conv_channels)} widths")
        input_shape = (3, *clip_shape)
        build_device = "meta" if str(device) == "meta" else None
        layers = build_layers(C3D_LAYERS, conv_channels, input_shape, fc_dim, num_classes, build_device)
        super().__init__(layers, input_shape, generator)
        if device is not None and build_device is None:
            self.to(device)
