"""VGG-19 of `VGG_ILSVRC_19_layers` (Simonyan & Zisserman), with Caffe's layer names.

Data flow of one batch (B frames, 224×224, channels BGR minus the mean pixel, see `preprocess_vgg`):

    images (B, 3, 224, 224)
      → conv1_1, conv1_2 (64)  → pool1 → (B, 64, 112, 112)
      → conv2_1, conv2_2 (128) → pool2 → (B, 128, 56, 56)
      → conv3_1 … conv3_4 (256) → pool3 → (B, 256, 28, 28)
      → conv4_1 … conv4_4 (512) → pool4 → (B, 512, 14, 14)
      → conv5_1 … conv5_4 (512) → pool5 → (B, 512, 7, 7) → flatten (B, 25088)
      → fc6 (4096) → fc7 (4096) → fc8 (1000 ImageNet classes; 205 scenes, 203 actions in the
        fine-tuned families) → prob

Convolutions are 3×3, padding 1, each followed by an in-place ReLU; fc6 and fc7 too (the deploy
prototxt's `relu6` runs in place on `fc6`, so a read `fc6` is post-ReLU; `pre_relu=True` gives the raw
value). Pools are 2×2 stride 2 in Caffe's ceil mode (identical to floor mode at 224×224).
The weight file uses the BVLC schema (V1 `layers`, legacy 4-D blobs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alstm_core.storage import VGG_FAMILIES
from caffe_models.caffenet import CaffeSequential, build_layers

# (Caffe layer, conv: index into the block widths | pool: kernel = stride (H, W)).
VGG19_LAYERS = (
    ("conv1_1", 0), ("conv1_2", 0), ("pool1", (2, 2)),
    ("conv2_1", 1), ("conv2_2", 1), ("pool2", (2, 2)),
    ("conv3_1", 2), ("conv3_2", 2), ("conv3_3", 2), ("conv3_4", 2), ("pool3", (2, 2)),
    ("conv4_1", 3), ("conv4_2", 3), ("conv4_3", 3), ("conv4_4", 3), ("pool4", (2, 2)),
    ("conv5_1", 4), ("conv5_2", 4), ("conv5_3", 4), ("conv5_4", 4), ("pool5", (2, 2)),
)
VGG19_CHANNELS = (64, 128, 256, 512, 512)  # per block
VGG19_IMAGE_SIZE = 224
VGG19_NUM_CLASSES = VGG_FAMILIES["obj"]  # ImageNet's 1000: the release, VGG_obj
VGG19_RELEASE_FILE = "VGG_ILSVRC_19_layers.caffemodel"


class VGG19(CaffeSequential):
    """VGG-19. Input (B, 3, 224, 224) float BGR; `features()` reads any layer (see caffenet.py).

    `num_classes` is 1000 for the ImageNet release (VGG_obj); the fine-tuned families need theirs, and
    `rename={'their_fc8': 'fc8'}` when loading if the file names it differently. `conv_channels`
    (5 block widths), `fc_dim` and `image_size` shrink it for tests; `device="meta"` builds shapes only.
    """

    release_file = VGG19_RELEASE_FILE
    preprocess_hint = "prepare frames with caffe_models.preprocess_vgg"

    def __init__(self, num_classes: int = VGG19_NUM_CLASSES, *, conv_channels: Sequence[int] = VGG19_CHANNELS,
                 fc_dim: int = 4096, image_size: int = VGG19_IMAGE_SIZE,
                 generator: torch.Generator | None = None, device=None):
        if len(conv_channels) != len(VGG19_CHANNELS):
            raise ValueError(f"VGG-19 has {len(VGG19_CHANNELS)} blocks; got {len(conv_channels)} widths")
        input_shape = (3, image_size, image_size)
        build_device = "meta" if str(device) == "meta" else None
        layers = build_layers(VGG19_LAYERS, conv_channels, input_shape, fc_dim, num_classes, build_device)
        super().__init__(layers, input_shape, generator)
        if device is not None and build_device is None:
            self.to(device)
