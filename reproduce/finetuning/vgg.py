"""VGG-19 fine-tuned on frames (VGG_act: ActivityNet's action classes) or on images (VGG_sce: scenes),
with BVLC Caffe's semantics, from the ImageNet release ``VGG_ILSVRC_19_layers.caffemodel``.

The paper says only that VGG-19 was fine-tuned; these choices are marked [choice]:

- [choice] BVLC's ``models/finetune_flickr_style`` convention (docs/formats.md §6): conv1_1 … conv5_4,
  fc6 and fc7 copied from the ImageNet weights by name (their widths read from the file); a new fc8
  for the classes, Gaussian std 0.01, bias 0, with ``lr_mult: 10, 20`` ("starting from random"), every
  other layer ``1, 2``; decay_mult 1 / 0; dropout 0.5 after fc6 and fc7; ``SOFTMAX_LOSS``. Solver
  (unless ``--solver``): base_lr 0.001, step γ 0.1 every 20000, 100000 updates, momentum 0.9, weight
  decay 5e-4, a snapshot every 10000, BVLC semantics; batch 50.
- [choice] the data, Caffe's ``ImageData`` + ``DataTransformer`` (``image_data_layer.cpp``,
  ``data_transformer.cpp``): each image (or frame) resized to **256×256** (``new_height: 256 new_width:
  256``, the whole image warped, as the BVLC fine-tuning examples do; not the shorter side to 256 of
  VGG's own training), uint8 with ``cv::resize``'s rounding, BGR; then ``do_mirror = rand % 2``, a random
  224×224 crop at ``h_off = rand % (256 − 224 + 1)`` (BVLC's ``Rand(n)``: 0..32, both ends drawn), the
  mean pixel [103.939, 116.779, 123.68] subtracted (the release's), the crop flipped when mirrored. Test:
  the centre crop (16, 16), no mirror. Extraction (`caffe_models.preprocess_vgg`) resizes whole frames
  to 224×224 instead, the convention of pycaffe's classifier.
- [choice] VGG_act's samples: one random frame of a random training sample of the built dataset per
  batch slot (the sample's class is the frame's label; an epoch visits every sample once); its
  validation frames the middle frame of each valid sample. VGG_sce: ``--images LIST`` (``<image> <label>``).

Snapshots are ``<prefix>_iter_<N>.caffemodel`` in BVLC's V2 format (`alstm extract --vgg act=FILE` reads
them; for a 203-class fc8, the family's size), prefix ``vgg19_finetune`` unless the solver names one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from caffe_models import VGG19
from caffe_models.caffemodel import file_sha256
from caffe_models.preprocess import VGG_MEAN_BGR, resize_bilinear
from caffe_models.vgg import VGG19_CHANNELS, VGG19_LAYERS
from reproduce.errors import ReproduceError, python_warning
from reproduce.finetuning.c3d import (
    copy_pretrained,
    first_blob_shape,
    read_samples,
    read_weights,
    solver_settings,
)
from reproduce.finetuning.clips import SampleTable, image_samples, read_frames
from reproduce.finetuning.run import FinetuneResult, Job, run_job, settings_identity
from reproduce.finetuning.solver import SolverSettings
from reproduce.runtime.distributed import Distributed

CONV_LAYERS = tuple(name for name, _ in VGG19_LAYERS if name.startswith("conv"))
FLICKR_STYLE = SolverSettings(base_lr=0.001, lr_policy="step", gamma=0.1, stepsize=20000, max_iter=100000,
                              momentum=0.9, weight_decay=5e-4, snapshot=10000,
                              snapshot_prefix="finetune_flickr_style", semantics="bvlc")
NEW_FC8_MULTS = (10.0, 20.0)
DEFAULT_PREFIX = "vgg19_finetune"


class ImageDataLayer:
    """BVLC's ImageData + DataTransformer for one frame (see the module): items (3, crop, crop) float32
    BGR minus the mean pixel."""

    length = 1                                   # frames per item

    def __init__(self, *, resize: int = 256, crop: int = 224, mirror: bool = True, mean=VGG_MEAN_BGR):
        if crop > resize:
            raise ReproduceError(f"crop {crop} is larger than the resized image {resize}")
        self.resize, self.crop, self.mirror = resize, crop, mirror
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)

    def _resized(self, frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.array(frame[None]))                 # (1, H, W, 3), a writable copy
        return resize_bilinear(image, (self.resize, self.resize), round_to_uint8=True).flip(1)[0]  # BGR

    def _transform(self, image: torch.Tensor, h: int, w: int, mirror: bool) -> torch.Tensor:
        x = image[:, h:h + self.crop, w:w + self.crop] - self.mean
        return (x.flip(-1) if mirror else x).contiguous()

    def train_item(self, table: SampleTable, i: int, rng: np.random.Generator) -> torch.Tensor:
        sample = table[i]
        frame = read_frames(sample, sample.first + int(rng.integers(sample.frames)), 1)[0]
        mirror = self.mirror and bool(rng.integers(2))           # do_mirror first, then the offsets
        room = self.resize - self.crop + 1
        h, w = int(rng.integers(room)), int(rng.integers(room))
        return self._transform(self._resized(frame), h, w, mirror)

    def eval_item(self, table: SampleTable, i: int, start: int) -> torch.Tensor:
        offset = (self.resize - self.crop) // 2
        return self._transform(self._resized(read_frames(table[i], start, 1)[0]), offset, offset, False)


def vgg_network(weights: str, num_classes: int, *, image_size: int = 224, seed: int = 0) -> VGG19:
    """VGG-19 with conv1_1 … fc7 copied from ``weights`` (widths from the file) and a new fc8 of
    ``num_classes`` outputs, Gaussian std 0.01, bias 0 (drawn from ``seed``)."""
    caffe = read_weights(weights)
    blocks = [(first_blob_shape(caffe, {f"conv{b + 1}_1"}) or (default,))[0]
              for b, default in enumerate(VGG19_CHANNELS)]
    fc6 = first_blob_shape(caffe, {"fc6"})
    if fc6 is None:
        raise ReproduceError(f"{weights} has no fc6 layer: give the ImageNet VGG-19 release "
                             "(VGG_ILSVRC_19_layers.caffemodel)")
    generator = torch.Generator().manual_seed(seed)
    net = VGG19(num_classes, conv_channels=blocks, fc_dim=fc6[0], image_size=image_size, generator=generator)
    params = net.caffe_parameters()
    with torch.no_grad():
        params["fc8"][0].normal_(0.0, 0.01, generator=generator)
        params["fc8"][1].zero_()
    copy_pretrained(net, caffe, CONV_LAYERS + ("fc6", "fc7"), {}, source=weights)
    return net


def finetune_vgg(out: str, *, weights: str, data: str | None = None, videos: str | None = None,
                 annotations: str | None = None, images: str | None = None, valid_images: str | None = None,
                 num_classes: int | None = None, solver: str | SolverSettings | None = None,
                 solver_semantics: str | None = None, batch_size: int = 50, valid_batch_size: int = 50,
                 valid_clips: int = 1, resize: int = 256, crop: int = 224, seed: int | None = None,
                 resume: bool = False, device: str | None = None, precision: str = "float32",
                 workers: int = 2, read_ahead: int = 2, checkpoint_every: int = 500,
                 dist: Distributed | None = None, progress: bool = False,
                 callback: Callable[[int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune VGG-19 from ``weights`` into ``out`` (see the module); ``alstm finetune vgg``.

    Samples: ``data`` with ``videos`` (and ``annotations`` for ActivityNet): VGG_act; or ``images`` (a
    Caffe ImageData list, ``num_classes`` fc8 outputs, ``valid_images`` its test list): VGG_sce.
    ``resize``/``crop``: 256 and 224 (smaller for tests). The other arguments are `finetune_c3d`'s.
    """
    settings = solver_settings(solver, solver_semantics or "bvlc", FLICKR_STYLE, DEFAULT_PREFIX)
    for text in settings.warnings:
        (warn or python_warning)(f"{solver}: {text}")
    seed = seed if seed is not None else max(settings.random_seed, 0)
    if images is not None:
        if data is not None:
            raise ReproduceError("give --data with --videos, or --images, not both")
        samples = image_samples(images, num_classes=num_classes, valid=valid_images)
    else:
        samples = read_samples(data, videos, annotations, None, None, None, 1)
    net = vgg_network(weights, samples.num_classes, image_size=crop, seed=seed)
    layer = ImageDataLayer(resize=resize, crop=crop)
    identity = {"network": "vgg", "weights": file_sha256(weights),
                "samples": os.path.abspath(samples.source), "train": len(samples.train),
                "valid": len(samples.valid),
                "classes": list(samples.class_names), "solver": settings_identity(settings),
                "batch_size": batch_size, "seed": seed, "resize": resize, "crop": crop,
                "valid_clips": valid_clips}
    job = Job(net, samples, layer, settings, {"fc8": NEW_FC8_MULTS}, "bvlc-v2", batch_size, valid_batch_size,
              valid_clips, seed, identity)
    return run_job(job, os.fspath(out), resume=resume, device=device, precision=precision, workers=workers,
                   read_ahead=read_ahead, checkpoint_every=checkpoint_every, dist=dist, progress=progress,
                   callback=callback)
