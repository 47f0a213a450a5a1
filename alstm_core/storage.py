"""The storage convention of feature files (docs/paper.md §1, §8), defined once.

A video of L frames is stored as rows of *sources* named ``<network>_<layer>``:

    c3d_<layer>           one row per complete 16-frame chunk: frames 0, 16, 32, …  (⌊L / 16⌋ rows)
    vgg_<family>_<layer>  one row every 8 frames inside those chunks: frames 0, 8, 16, …
    <source>_flip         the same rows computed on horizontally flipped frames
    targets               the label(s) of a sample

``family`` is a VGG-19 fine-tuning: obj (ImageNet objects), sce (Places205 scenes), act (actions), and
``layer`` one of fc6, fc7, fc8. An LSTM step reads one 16-frame chunk (F / N = 192 / 12); attending to
T = 2N frames reads every attended row, T = N every other one (the first frame of each chunk). Splits
are train, valid, test.
"""

from __future__ import annotations

from typing import NamedTuple

CHUNK_FRAMES = 16           # frames per C3D row and per LSTM step
ATTENDED_STRIDE = 8         # frames between the stored rows of an attended (VGG-19) source
LAYERS = ("fc6", "fc7", "fc8")
VGG_FAMILIES = {"obj": 1000, "sce": 205, "act": 203}   # family → fc8 classes of its release
FLIP_SUFFIX = "_flip"
TARGETS = "targets"
SPLITS = ("train", "valid", "test")


class SourceName(NamedTuple):
    """A feature source made by an extractor: ``network`` ``c3d`` or ``vgg_<family>``, ``layer``
    fc6/fc7/fc8, ``flip`` for the features of flipped frames."""

    network: str
    layer: str
    flip: bool = False

    @property
    def family(self) -> str | None:
        """The VGG-19 family (``obj``, ``sce``, ``act``, …); None for C3D."""
        return None if self.network == "c3d" else self.network.removeprefix("vgg_")

    @property
    def stride(self) -> int:
        """Frames between the stored rows of this source."""
        return row_stride(self.network)

    def __str__(self) -> str:
        return source_name(self.network, self.layer, self.flip)


def source_name(network: str, layer: str, flip: bool = False) -> str:
    """``c3d_fc6``, ``vgg_obj_fc8``, ``vgg_act_fc8_flip``: the name under which a file stores a source."""
    return f"{network}_{layer}" + (FLIP_SUFFIX if flip else "")


def parse_source(name: str) -> SourceName | None:
    """The network, layer and flip of a source an extractor makes (``c3d_fc6``, ``vgg_obj_fc8_flip``);
    None for any other name (``targets``, ``salient``, a release's ``c3d_fc7pca``)."""
    flip = name.endswith(FLIP_SUFFIX)
    network, _, layer = name.removesuffix(FLIP_SUFFIX).rpartition("_")
    family = network.removeprefix("vgg_")
    extracted = network == "c3d" or (network.startswith("vgg_") and family and "_" not in family)
    return SourceName(network, layer, flip) if layer in LAYERS and extracted else None


def row_stride(network: str) -> int:
    """Frames between stored rows: 16 for C3D (one chunk), 8 for the VGG-19 families."""
    return CHUNK_FRAMES if network == "c3d" else ATTENDED_STRIDE
