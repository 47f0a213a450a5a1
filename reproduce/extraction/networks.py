"""The feature networks that read videos: C3D and the VGG-19 families, with their weight files.

`new_c3d` and `new_vgg` build the releases' networks (random weights until a file is loaded; tests swap
them for small ones); `load_networks` loads the given files and says which networks stay random.
`extractor_for` wraps them in the streaming `caffe_models.extract.FeatureExtractor` at a precision.
For highlighting, `recorded_files` and `find_file` find the weight and mean files a checkpoint's
training features were made with, by the path, name and sha256 recorded with them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch

from alstm_core.storage import VGG_FAMILIES
from caffe_models import C3D, VGG19, load_caffemodel, load_mean
from caffe_models.caffemodel import file_sha256, output_width
from caffe_models.extract import FeatureExtractor
from reproduce.errors import ReproduceError
from reproduce.runtime.precision import network_autocast_dtype


def new_c3d(seed: int, num_classes: int | None = None) -> torch.nn.Module:
    """The release's C3D (random weights until a file is loaded); ``num_classes`` fc8 outputs (None:
    Sports-1M's 487; a C3D fine-tuned on a dataset scores its classes)."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return C3D(**kwargs, generator=torch.Generator().manual_seed(seed))


def new_vgg(num_classes: int, seed: int) -> torch.nn.Module:
    """The release's VGG-19 with ``num_classes`` fc8 outputs (random weights until a file is loaded)."""
    return VGG19(num_classes, generator=torch.Generator().manual_seed(seed))


def parse_families(items: Sequence[str], flag: str = "--vgg") -> dict[str, str | None]:
    """{family: weight file or None} from ``FAMILY[=WEIGHTS]`` items; ReproduceError naming ``flag``."""
    families: dict[str, str | None] = {}
    for item in items:
        family, _, path = item.partition("=")
        if family not in VGG_FAMILIES:
            raise ReproduceError(f"{flag} {item}: unknown family {family!r}; choose from "
                                 f"{', '.join(VGG_FAMILIES)} (write FAMILY=WEIGHTS)")
        families[family] = path or None
    return families


class Networks(NamedTuple):
    """C3D (None: not used) and the VGG-19 families, and the networks left on random weights."""

    c3d: torch.nn.Module | None
    vgg: dict[str, torch.nn.Module]
    random: list[str]                  # "c3d", "vgg_obj", … without a weight file


def load_networks(c3d: str | None | bool, vgg: Mapping[str, str | None], seed: int = 0) -> Networks:
    """Build the networks and load their weight files.

    ``c3d``: a .caffemodel path, None for random weights, False for no C3D. ``vgg``: {family: path or
    None}. Random weights are seeded ``seed`` (C3D) and ``seed + 1 + k`` (the k-th family). Each
    network's fc8 is as wide as its file's (a network fine-tuned on a dataset scores that dataset's
    classes: `alstm finetune`'s snapshots, R-C3D's ActivityNet C3D); without a file, the release's."""
    unknown = sorted(set(vgg) - set(VGG_FAMILIES))
    if unknown:
        raise ReproduceError(f"no VGG-19 family {', '.join(unknown)}: the families are "
                             f"{', '.join(VGG_FAMILIES)}")
    random = []
    net = None
    if c3d is not False:
        net = new_c3d(seed, output_width(c3d) if c3d else None)   # fc8 as wide as the file's
        if c3d:
            load_caffemodel(net, c3d)
        else:
            random.append("c3d")
    nets = {}
    for k, (family, path) in enumerate(vgg.items()):
        width = output_width(path) if path else None    # a fine-tune scores its own classes
        nets[family] = new_vgg(width or VGG_FAMILIES[family], seed + 1 + k)
        if path:
            load_caffemodel(nets[family], path)
        else:
            random.append(f"vgg_{family}")
    return Networks(net, nets, random)


def extractor_for(networks: Networks, layers: Sequence[str], *, c3d_mean: str | None = None,
                  flip: bool = True, device: str = "cpu", precision: str = "auto",
                  **options) -> FeatureExtractor:
    """The `FeatureExtractor` of ``networks`` at ``precision`` (`reproduce.runtime.precision`); ``c3d_mean``:
    the release's mean cube (.binaryproto), recorded by name and sha256. ``options``: FeatureExtractor's."""
    if c3d_mean:
        options |= {"c3d_mean": load_mean(c3d_mean), "mean_path": os.path.abspath(c3d_mean),
                    "mean_description": f"{os.path.basename(c3d_mean)} (sha256 {file_sha256(c3d_mean)})"}
    return FeatureExtractor(networks.c3d, networks.vgg, list(layers), flip=flip, device=device,
                            precision=precision,
                            auto_dtype=network_autocast_dtype(precision, device), **options)


_RECORDED = re.compile(r"^(?P<name>.+) \(sha256 (?P<sha>[0-9a-f]{64})\)$")


class RecordedFile(NamedTuple):
    """A weight or mean file recorded with features: its name, sha256 and where it was (may be "")."""

    name: str
    sha256: str
    path: str = ""


def _recorded(description, path) -> RecordedFile | None:
    match = _RECORDED.match(str(description or ""))
    return RecordedFile(match["name"], match["sha"], str(path or "")) if match else None


def recorded_files(meta: Mapping, source: str) -> tuple[RecordedFile | None, RecordedFile | None]:
    """(weights, mean cube) that made ``source`` for a checkpoint's training data, None where not
    recorded: from the checkpoint's ``source_info`` if it has one, else from its feature file if that
    still exists."""
    info = (meta.get("source_info") or {}).get(source)
    data = (meta.get("config") or {}).get("data")
    if info is None and data and os.path.isfile(data):
        from fuel_datasets import open_dataset

        try:
            with open_dataset(data) as ds:
                info = ds.source_info(source) if source in ds.sources else None
        except Exception:  # an unreadable old feature file only means "nothing recorded"
            info = None
    info = info or {}
    return (_recorded(info.get("weights"), info.get("weights_path")),
            _recorded(info.get("mean"), info.get("mean_path")))


def find_file(network: str, given: str | None, recorded: set[RecordedFile], folders: Sequence[str],
              warn: Callable[[str], None] | None = None, what: str = "weight file") -> str | None:
    """The ``what`` of ``network``: ``given``, else a ``recorded`` one found with its sha256 where it was
    recorded, or by name in ``folders``; None if none. ``warn`` hears when ``given`` is not a file the
    features were made with."""
    if given:
        if recorded and warn and file_sha256(given) not in {r.sha256 for r in recorded}:
            names = ", ".join(sorted(r.name for r in recorded))
            warn(f"{given} is not the {network} {what} the checkpoint's features were made with "
                 f"({names}); its features may not match")
        return given
    for r in sorted(recorded):
        for path in ([r.path] if r.path else []) + [os.path.join(folder, r.name) for folder in folders]:
            if os.path.isfile(path) and file_sha256(path) == r.sha256:
                return path
    return None
