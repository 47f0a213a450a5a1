"""Caffe's input preprocessing of the two releases, applied to batches of decoded RGB uint8 frames.

C3D (C3D-v1.0 `video_data_layer.cpp`, `util/image_io.cpp`; docs/formats.md):
1. OpenCV reads frames as BGR uint8; ours arrive as RGB and are reordered;
2. each frame is resized to 171×128 (W×H) with `cv::resize` INTER_LINEAR, whose output stays uint8;
3. the release's mean cube (3, 16, 128, 171) is subtracted element by element (scale 1);
4. the 112×112 crop at (h, w) = ((128 − 112) / 2, (171 − 112) / 2) = (8, 29) is kept (the test-time
   centre crop); with `mirror` the crop is flipped left-right *after* the mean subtraction, as Caffe's
   mirror does (flipping the frames beforehand would subtract a mirrored mean cube instead).

VGG-19 (release page; pycaffe's classifier): frames resized to 224×224, BGR in [0, 255], minus the mean
pixel [103.939, 116.779, 123.68]. [choice] The release does not fix how a frame becomes 224×224; the
whole frame is resized (no aspect-preserving crop), as pycaffe's `resize_image` to the input size does.

Resize: bilinear interpolation between pixel centres (source x = (x' + 0.5) · in / out − 0.5, clamped at
the border) without antialiasing. That is OpenCV's INTER_LINEAR (whose exact-2× downscale shortcut,
INTER_AREA, has the same weights) and torch's `interpolate(mode="bilinear", align_corners=False,
antialias=False)`, used here. OpenCV writes uint8 with 11-bit fixed-point weights; the C3D path rounds to
integers (half up) like it and may differ from OpenCV by one grey level on some pixels. The VGG path keeps
floats, as pycaffe resizes float images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from caffe_models.errors import CaffeModelError

C3D_RESIZE = (128, 171)  # (H, W) after cv::resize
C3D_CROP = 112
C3D_CROP_OFFSET = (8, 29)  # (h_off, w_off) of the test-time centre crop
# Per-channel BGR approximation of the mean cube (MMAction2's C3D config); the release cube is better.
C3D_MEAN_BGR = (104.0, 117.0, 128.0)
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
VGG_SIZE = 224


def center_crop_offset(height: int, width: int, crop: int) -> tuple[int, int]:
    """Caffe's test-time crop corner, with its integer division: (128, 171, 112) → (8, 29)."""
    return (height - crop) // 2, (width - crop) // 2


def _frames_tensor(frames, ndim: int, layout: str) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != ndim \
            or frames.shape[-1] != 3:
        got = (f"{tuple(frames.shape)} {frames.dtype}" if isinstance(frames, torch.Tensor | np.ndarray)
               else type(frames).__name__)
        raise CaffeModelError(f"expected RGB uint8 frames {layout}, got {got}")
    return frames


def _mean_tensor(mean, shape: tuple[int, ...], device) -> torch.Tensor:
    """The mean as a (3, …) tensor broadcastable to `shape`: a full blob, or one value per BGR channel."""
    if isinstance(mean, torch.Tensor):
        mean = mean.to(device=device, dtype=torch.float32)
    else:
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float32), device=device)
    if tuple(mean.shape) == (3,):
        return mean.view(3, *([1] * (len(shape) - 1)))
    if tuple(mean.shape) != shape:
        raise CaffeModelError(f"mean of shape {tuple(mean.shape)} does not fit inputs of shape {shape}; pass "
                              "the release's mean file (load_mean) or 3 per-channel BGR values")
    return mean


def resize_bilinear(images: torch.Tensor, size: tuple[int, int], *, round_to_uint8: bool) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, h, w) float32, same channel order; see the module docstring.

    `round_to_uint8` rounds half up and clips to [0, 255], as cv::resize on uint8 images does.
    """
    x = images.permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)
        if round_to_uint8:
            x = torch.floor(x + 0.5).clamp_(0, 255)
    return x


def preprocess_c3d(frames, mean, *, crop_offset: tuple[int, int] = C3D_CROP_OFFSET,
                   mirror: bool = False) -> torch.Tensor:
    """Clips for C3D: (B, L, H, W, 3) uint8 RGB → (B, 3, L, 112, 112) float32 BGR, mean-subtracted.

    `mean`: the release's cube (3, L, 128, 171) from `load_mean`, or 3 BGR values (`C3D_MEAN_BGR`);
    L = 16 for the release. Runs on the frames' device (numpy input runs on the CPU).
    """
    frames = _frames_tensor(frames, 5, "(B, L, H, W, 3)")
    batch, length, height, width, _ = frames.shape
    h_off, w_off = crop_offset
    if not (0 <= h_off <= C3D_RESIZE[0] - C3D_CROP and 0 <= w_off <= C3D_RESIZE[1] - C3D_CROP):
        raise CaffeModelError(f"crop offset {crop_offset} leaves the {C3D_RESIZE} frame")
    x = resize_bilinear(frames.reshape(batch * length, height, width, 3), C3D_RESIZE, round_to_uint8=True)
    x = x.flip(1)  # RGB → BGR; (B·L, 3, 128, 171)
    x = x.view(batch, length, 3, *C3D_RESIZE).permute(0, 2, 1, 3, 4)  # (B, 3, L, 128, 171)
    cube = _mean_tensor(mean, (3, length, *C3D_RESIZE), x.device)
    window = (..., slice(h_off, h_off + C3D_CROP), slice(w_off, w_off + C3D_CROP))
    if cube.shape[-1] > 1:  # a full cube, subtracted at the crop's position (not a per-channel mean)
        cube = cube[window]
    x = x[window] - cube  # (B, 3, L, 112, 112)
    if mirror:
        x = x.flip(-1)
    return x.contiguous()


def preprocess_vgg(frames, mean=VGG_MEAN_BGR, *, size: int = VGG_SIZE, mirror: bool = False) -> torch.Tensor:
    """Frames for VGG-19: (B, H, W, 3) uint8 RGB → (B, 3, size, size) float32 BGR, mean-subtracted.

    `mean`: 3 BGR values (the release's mean pixel by default) or a (3, size, size) mean image.
    """
    frames = _frames_tensor(frames, 4, "(B, H, W, 3)")
    x = resize_bilinear(frames, (size, size), round_to_uint8=False).flip(1)  # (B, 3, size, size) BGR
    x = x - _mean_tensor(mean, (3, size, size), x.device)
    if mirror:
        x = x.flip(-1)
    return x.contiguous()
