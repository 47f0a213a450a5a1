"""What C3D and VGG19 share: a chain of Caffe layers, run in order, any of which can be read out.

Caffe's deploy prototxts of both releases run ReLU and dropout *in place*: `relu6` and `drop6` take
`fc6` as bottom and top. After a forward pass the blob `fc6` therefore holds the activation after its
ReLU (dropout is the identity at test time), and that is what the original extraction returned
(C3D's `extract_image_features` of `fc6-1`, pycaffe's `net.blobs['fc6']`). `features()` returns the
same by default, for every convolution and for fc6/fc7; `pre_relu=True` returns the values before the
ReLU instead. fc8 has no ReLU (raw class scores) and `prob` is its softmax. Dropout is left out.

The modules are named after the Caffe layers (`conv5b`, `fc6`), so state-dict keys and weight files map
by name. Without loaded weights a network runs on a seeded random initialisation and warns loudly
(`RandomWeightsWarning`); `has_real_weights` and `weights_description` tell extraction which it was.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from caffe_models.errors import CaffeModelError


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a network holds, as extraction records them beside the features
    (``load_caffemodel`` in caffemodel.py makes one and stores it as ``net.weights``)."""

    file: str  # the file's name, without its folder
    sha256: str
    schema: str
    layers: tuple[str, ...]  # the network layers that were loaded
    path: str = ""  # where it was loaded from (absolute), so that the file can be found again

    @property
    def description(self) -> str:
        return f"{self.file} (sha256 {self.sha256})"


class RandomWeightsWarning(UserWarning):
    """A network computed features with random weights: they are not the release's features."""


def caffe_pool_size(size: int, kernel: int, stride: int) -> int:
    """Output length of Caffe's max pooling without padding: it rounds up, the last window clipped."""
    return max(1, math.ceil((size - kernel) / stride) + 1)


def build_layers(table, channels: Sequence[int], input_shape: Sequence[int], fc_dim: int, num_classes: int,
                 device=None) -> list[tuple[str, str, nn.Module | None]]:
    """(name, kind, module) of a Caffe chain from an architecture table.

    `table`: (name, value) rows, a convolution's value is its index into `channels`, a pool's value its
    kernel (= stride) per spatial axis; `input_shape`: (3, T, H, W) or (3, H, W). The convolutions are
    3×3(×3) with padding 1 and stride 1; pools are max pools in ceil mode (Caffe's rounding).
    fc6 takes the flattened last pool (C, T, H, W order, as Caffe's InnerProduct reads a blob).
    """
    spatial = len(input_shape) - 1
    conv, pool = (nn.Conv3d, nn.MaxPool3d) if spatial == 3 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[tuple[str, str, nn.Module | None]] = []
    width, size = input_shape[0], list(input_shape[1:])
    for name, value in table:
        if name.startswith("conv"):
            out = channels[value]
            layers.append((name, "conv", conv(width, out, 3, padding=1, device=device)))
            width = out
        else:
            kernel = tuple(value)
            layers.append((name, "pool", pool(kernel, stride=kernel, ceil_mode=True)))
            size = [caffe_pool_size(n, k, k) for n, k in zip(size, kernel, strict=True)]
    flat = width * math.prod(size)
    layers += [("fc6", "fc", nn.Linear(flat, fc_dim, device=device)),
               ("fc7", "fc", nn.Linear(fc_dim, fc_dim, device=device)),
               ("fc8", "score", nn.Linear(fc_dim, num_classes, device=device)),
               ("prob", "prob", None)]
    return layers


class CaffeSequential(nn.Module):
    """Base of C3D and VGG19; see the module docstring for what each readable layer holds."""

    caffe_schema = "bvlc"  # the schema of the release's .caffemodel, when a file does not tell
    caffe_aliases = MappingProxyType({})  # {name in the release file: module name}
    release_file = ""
    preprocess_hint = ""

    def __init__(self, layers, input_shape: Sequence[int], generator: torch.Generator | None = None):
        super().__init__()
        self._plan = tuple((name, kind) for name, kind, _ in layers)
        for name, _, module in layers:
            if module is not None:
                self.add_module(name, module)
        self.input_shape = tuple(input_shape)
        self.weights: WeightsInfo | None = None
        self._warned_random = False
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        self.init_seed = generator.initial_seed()
        self._random_init(generator)

    def _random_init(self, generator: torch.Generator) -> None:
        """He-normal weights and zero biases, so random features keep a usable scale through the chain."""
        with torch.no_grad():
            for weight, bias in self.caffe_parameters().values():
                if weight.is_meta:
                    continue
                nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
                bias.zero_()

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Readable layers in forward order, with Caffe's names."""
        return tuple(name for name, _ in self._plan)

    def caffe_parameters(self) -> dict[str, tuple[nn.Parameter, nn.Parameter]]:
        """{layer: (weight, bias)} in Caffe's blob order; the shapes are Caffe's (out, in, k…)."""
        return {name: (getattr(self, name).weight, getattr(self, name).bias)
                for name, kind in self._plan if kind in ("conv", "fc", "score")}

    @property
    def has_real_weights(self) -> bool:
        """Whether a weight file was loaded (it may lack some layers: `random_layers`)."""
        return self.weights is not None

    def random_layers(self, layers: Sequence[str]) -> list[str]:
        """The layers with weights that ``layers`` are computed through (every convolution and fc layer up
        to the deepest one) and that no file filled: all of them without a weight file; fc7 and fc8 for
        fc7 or fc8 of a file that has fc6 only (R-C3D's ActivityNet C3D)."""
        last = max(self.layer_names.index(self._resolve(layer)) for layer in layers)
        loaded = set(self.weights.layers) if self.weights is not None else set()
        weighted = self.caffe_parameters()
        return [name for name in self.layer_names[: last + 1] if name in weighted and name not in loaded]

    @property
    def weights_description(self) -> str:
        """The weight file (name and sha256), or the random initialisation, for the features' metadata."""
        if self.weights is not None:
            return self.weights.description
        return f"random initialisation (seed {self.init_seed}); not real {type(self).__name__} features"

    def _resolve(self, layer: str) -> str:
        name = self.caffe_aliases.get(layer, layer)
        if name not in self.layer_names:
            raise CaffeModelError(f"{type(self).__name__} has no layer {layer!r}; choose from "
                                  f"{', '.join(self.layer_names)}")
        return name

    def _check_input(self, inputs: torch.Tensor) -> None:
        if (not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point()
                or tuple(inputs.shape[1:]) != self.input_shape or inputs.ndim != len(self.input_shape) + 1):
            got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            dtype = f" {inputs.dtype}" if isinstance(inputs, torch.Tensor) else ""
            shape = ", ".join(map(str, self.input_shape))
            raise CaffeModelError(f"{type(self).__name__} takes float input (B, {shape}), got {got}{dtype}; "
                                  f"{self.preprocess_hint}")

    def _warn_if_random(self) -> None:
        if self.weights is None and not self._warned_random:
            self._warned_random = True
            warnings.warn(f"{type(self).__name__} runs with random weights (seed {self.init_seed}): its "
                          f"outputs are not real features. Load the release's {self.release_file} with "
                          "caffe_models.load_caffemodel(net, path).", RandomWeightsWarning, stacklevel=3)

    @torch.no_grad()
    def features(self, inputs: torch.Tensor, layers: Sequence[str] = ("fc6",), *,
                 pre_relu: bool = False) -> dict[str, torch.Tensor]:
        """{requested name: blob} of the requested layers, in one pass that stops at the deepest one.

        Names are Caffe's (`conv5b`, `pool5`, `fc6`, `fc7`, `fc8`, `prob`, and the release's aliases such
        as C3D's `fc6-1`). fc layers and `prob` give (B, D); convolutions and pools give the blob as
        Caffe holds it, (B, C, T, H, W) or (B, C, H, W). Convolutions, fc6 and fc7 are read after their
        in-place ReLU unless `pre_relu`. Extraction only: no gradients are recorded.
        """
        if isinstance(layers, str):
            layers = (layers,)
        wanted: dict[str, list[str]] = {}
        for layer in layers:
            wanted.setdefault(self._resolve(layer), []).append(layer)
        if not wanted:
            raise CaffeModelError("no layer requested; pass layers=('fc6',) for example")
        self._check_input(inputs)
        self._warn_if_random()
        last = max(self.layer_names.index(name) for name in wanted)
        found: dict[str, torch.Tensor] = {}
        x = inputs
        for name, kind in self._plan[: last + 1]:
            if kind == "prob":
                x = torch.softmax(x, dim=1)  # (B, C)
            else:
                if kind in ("fc", "score") and x.ndim > 2:
                    x = x.flatten(1)  # (B, C·[T·]H·W), Caffe's row-major blob order
                x = getattr(self, name)(x)
            if kind in ("conv", "fc"):
                if pre_relu and name in wanted:
                    found[name] = x
                x = torch.relu(x)  # Caffe's in-place ReLU: the blob holds this afterwards
            if name in wanted and name not in found:
                found[name] = x
        return {layer: found[self._resolve(layer)] for layer in layers}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The fc8 class scores (B, C), before the softmax (no gradients, as `features`)."""
        return self.features(inputs, ("fc8",))["fc8"]

    def extra_repr(self) -> str:
        return f"weights={self.weights_description!r}"
