"""Direct numpy computations of what Caffe does, written from the layer definitions (float64)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Caffe convolution, stride 1, padding 1: x (C, *S), weight (O, C, *k) → (O, *S)."""
    spatial = x.ndim - 1
    padded = np.pad(x, [(0, 0)] + [(1, 1)] * spatial)
    windows = sliding_window_view(padded, weight.shape[2:], axis=tuple(range(1, spatial + 1)))  # (C, *S, *k)
    out = np.tensordot(weight, windows, axes=([1, *range(2, 2 + spatial)],
                                              [0, *range(spatial + 1, 2 * spatial + 1)]))  # (O, *S)
    return out + bias.reshape((-1,) + (1,) * spatial)


def max_pool_caffe(x: np.ndarray, kernel) -> np.ndarray:
    """Caffe max pooling with stride = kernel: windows start at 0, k, 2k, … < n, the last one clipped."""
    starts = [range(0, n, k) for n, k in zip(x.shape[1:], kernel, strict=True)]
    out = np.empty((x.shape[0],) + tuple(len(s) for s in starts))
    for index in np.ndindex(*out.shape[1:]):
        window = tuple(slice(starts[a][i], starts[a][i] + kernel[a]) for a, i in enumerate(index))
        out[(slice(None),) + index] = x[(slice(None),) + window].reshape(x.shape[0], -1).max(axis=1)
    return out


def forward(x: np.ndarray, params: dict, pools: dict, order) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (value before ReLU, value after)} for one input x (3, *S), layer by layer in `order`."""
    blobs = {}
    h = x.astype(np.float64)
    for name in order:
        if name.startswith("conv"):
            pre = conv(h, *params[name])
            h = np.maximum(pre, 0)
        elif name.startswith("pool"):
            pre = h = max_pool_caffe(h, pools[name])
        elif name in ("fc6", "fc7"):
            weight, bias = params[name]
            pre = weight @ h.ravel() + bias
            h = np.maximum(pre, 0)
        elif name == "fc8":
            weight, bias = params[name]
            pre = h = weight @ h.ravel() + bias
        else:  # prob
            e = np.exp(h - h.max())
            pre = h = e / e.sum()
        blobs[name] = (pre, h)
    return blobs


def bilinear_resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv::resize INTER_LINEAR in float: sample at (x' + 0.5) · in / out − 0.5, clamped to the image."""
    def taps(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    r0, r1, fy = taps(image.shape[0], out_h)
    c0, c1, fx = taps(image.shape[1], out_w)
    image = image.astype(np.float64)
    fx = fx[None, :, None]
    top = image[r0][:, c0] * (1 - fx) + image[r0][:, c1] * fx
    bottom = image[r1][:, c0] * (1 - fx) + image[r1][:, c1] * fx
    return top * (1 - fy[:, None, None]) + bottom * fy[:, None, None]
