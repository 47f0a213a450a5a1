"""Extract C3D and VGG-19 features of videos into a feature file: ``extract_features`` → `Extraction`.

    run = extract_features(["videos/"], "videos.h5", c3d="c3d.caffemodel", c3d_mean="mean.binaryproto",
                           vgg={"obj": "VGG_ILSVRC_19_layers.caffemodel"})
    run.written, run.failed, run.frames / run.seconds

Each video is stored whole, with its measured frame rate and frame count, as rows of the sources
c3d_<layer>, vgg_<family>_<layer> and their _flip versions (the storage convention, `alstm_core.storage`).
No labels are needed (``labels`` stores them now instead of `alstm dataset build` later). Videos are
committed one by one: an existing file is appended to and the videos already in it are skipped, so a
killed run resumes by running again. A video that cannot be decoded is reported in ``failed``; a damaged
one keeps its readable part (``partial``).

Several processes: with ``shard=(rank, world)`` each rank extracts videos[rank::world] into its own
OUT.shard<R>-of<W>.h5; rank 0 waits for the others and merges the shards into ``out``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from alstm_core.atomic import write_json
from alstm_core.storage import TARGETS
from caffe_models import RandomWeightsWarning
from caffe_models.extract import extract_videos
from fuel_datasets import FeatureWriter, open_dataset
from fuel_datasets.merge import merge_feature_files
from reproduce.errors import ReproduceError, python_warning
from reproduce.extraction.inputs import list_videos, read_classes, read_labels
from reproduce.extraction.networks import extractor_for, load_networks
from reproduce.runtime.device import resolve_device

DEFAULT_LAYERS = ("fc6", "fc8")                # what `alstm extract` reads without --layers


@dataclass(frozen=True)
class Extraction:
    """What one ``extract_features`` call did (this rank's share, and the merge on rank 0)."""

    out: str                                   # the file written (a rank's shard; on rank 0, after the
                                               # merge, ``out`` itself)
    written: list[str]                         # video ids added
    partial: list[str]                         # added, but with a damaged end
    skipped: int                               # already in the file
    failed: dict[str, str]                     # path → why this rank could not read
    frames: int                                # frames read
    seconds: float
    precision: str | None                      # the networks' precision (None: nothing extracted)
    random_networks: list[str] = field(default_factory=list)
    rank: int = 0
    world: int = 1
    merged: int | None = None                  # videos added to ``out`` by rank 0's merge
    all_failed: dict[str, str] | None = None   # every rank's failures, after the merge

    @property
    def verdict_failed(self) -> dict[str, str]:
        """The failures the run is judged by: every rank's after a merge, else this rank's."""
        return self.failed if self.all_failed is None else self.all_failed

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def shard_path(out: str, rank: int, world: int) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}.shard{rank}-of{world}{ext or '.h5'}"


def check_existing(path: str, extractor) -> set[str]:
    """Ids already in ``path``, after checking that this run would add the same sources made with the
    same weights (a file mixing weights would silently mix features)."""
    if not os.path.exists(path):
        return set()
    with open_dataset(path) as ds:
        ids = set(ds.video_ids)
        have = set(ds.sources) - {TARGETS}
        want = extractor.source_info()
        if ids and have != set(want):
            raise ReproduceError(
                f"{path} holds the sources {', '.join(sorted(have))}; this run makes "
                f"{', '.join(sorted(want))}. Use the same --layers/--vgg/--no-c3d/--no-flip as before, "
                "or another --out")
        for source in sorted(have & set(want)):
            before = ds.source_info(source).get("weights")
            if before is not None and before != want[source]["weights"]:
                raise ReproduceError(f"{path}: {source} was extracted with {before}, this run uses "
                                     f"{want[source]['weights']}; use the same weights or another --out")
    return ids


def _wait_for_shards(out: str, world: int, expected: dict[int, list[str]], warn) -> list[dict]:
    """The done-markers of every rank; a marker counts only if it lists exactly that rank's videos (a
    leftover from a run over other videos does not)."""
    announced = False
    while True:
        markers = []
        for rank in range(world):
            try:
                with open(shard_path(out, rank, world) + ".done", encoding="utf-8") as f:
                    marker = json.load(f)
            except (OSError, ValueError):
                marker = None
            if marker is None or marker.get("videos") != expected[rank]:
                break
            markers.append(marker)
        if len(markers) == world:
            return markers
        if not announced:
            warn(f"rank 0 waits for rank {len(markers)} (of {world}) to finish")
            announced = True
        time.sleep(2.0)


def _merge_shards(out: str, videos: list[tuple[str, str]], world: int, progress: bool, warn):
    """Rank 0: wait for every shard, merge them into ``out``, remove them; (videos added, all failures)."""
    expected = {r: [vid for vid, _ in videos[r::world]] for r in range(world)}
    markers = _wait_for_shards(out, world, expected, warn)
    shards = [shard_path(out, r, world) for r in range(world)]
    added = merge_feature_files([s for s in shards if os.path.exists(s)], out, [vid for vid, _ in videos],
                                progress=progress)
    for shard in shards:
        for path in (shard, shard + ".done"):
            if os.path.exists(path):
                os.remove(path)
    return added, {path: why for marker in markers for path, why in marker["failed"].items()}


def extract_features(videos: Sequence[str], out: str, *, c3d: str | None | bool = None,
                     c3d_mean: str | None = None, vgg: Mapping[str, str | None] | None = None,
                     layers: Sequence[str] | None = None, flip: bool = True, labels: str | None = None,
                     classes: str | Sequence[str] | None = None, multilabel: bool = False,
                     split: str = "test", allow_random_weights: bool = False, weights_seed: int = 0,
                     device: str | None = None, precision: str = "auto", clip_batch: int | None = None,
                     workers: int | None = None,
                     queue_size: int = 8, buffer_mb: float | None = None, shard: tuple[int, int] = (0, 1),
                     local_rank: int | None = None, progress: bool = False,
                     warn: Callable[[str], None] | None = None) -> Extraction:
    """Extract the features of ``videos`` (files, or folders searched for video files) into ``out``.

    Networks: ``c3d`` a .caffemodel (None: random weights; False: no C3D), ``c3d_mean`` its mean cube
    (.binaryproto; default the per-channel mean), ``vgg`` {family: .caffemodel or None} (default
    {"obj": None}); random weights are refused unless ``allow_random_weights`` (seeded by
    ``weights_seed``). ``layers`` read from every network (None: fc6 and fc8, and from a weight file
    without fc8, such as R-C3D's C3D, the ones it holds; layers asked for that a file lacks are refused
    unless ``allow_random_weights``); ``flip`` adds the <source>_flip features.
    ``labels``: a 'video,label[,split]' CSV (``classes``: its class names, comma-separated or a file;
    ``multilabel``), the videos going to their CSV split, else to ``split``; without it the videos are
    stored unlabelled.
    Running: ``device`` (None: cuda where available), ``precision`` (`reproduce.runtime.precision`),
    ``clip_batch`` 16-frame clips per network call (cpu 4, cuda 32), ``workers`` decoding threads (cpu 1,
    cuda up to 8), ``queue_size`` chunks each keeps ready, ``buffer_mb`` decoded frames held ahead (cpu 0,
    cuda 2048). ``shard`` (rank, world) and ``local_rank`` (the rank on this machine: a bare cuda
    device becomes cuda:<local_rank>) place one of several processes. ``warn`` hears the warnings
    (random weights, the missing mean cube, waiting ranks; default: `warnings.warn`)."""
    warn = warn or python_warning
    rank, world = shard
    found = list_videos(list(videos))
    ids = [vid for vid, _ in found]
    class_names = read_classes(classes) if classes else None
    targets, splits = None, {}
    if labels:
        class_names, targets, splits = read_labels(labels, ids, class_names, multilabel)
    device = str(resolve_device(device, local_rank if world > 1 else 0))
    cuda = device.startswith("cuda")
    batch_size = clip_batch or (32 if cuda else 4)
    workers = workers if workers is not None else (min(8, os.cpu_count() or 1) if cuda else 1)
    if batch_size < 1 or workers < 1 or queue_size < 1:
        raise ReproduceError("--clip-batch, --workers and --queue-size must be at least 1")
    buffer_mb = buffer_mb if buffer_mb is not None else (2048 if cuda else 0)
    if buffer_mb < 0:
        raise ReproduceError(f"--buffer-mb {buffer_mb:g}: give 0 or more megabytes")
    with warnings.catch_warnings(record=True) as loading:     # the loader's notes, in ``warn``'s words
        warnings.simplefilter("always")
        nets = load_networks(c3d, {"obj": None} if vgg is None else vgg, weights_seed)
    for note in loading:
        warn(str(note.message))
    if nets.random and not allow_random_weights:
        raise ReproduceError(
            f"no weight file for {', '.join(nets.random)}: its features would come from random weights. "
            "Give --c3d FILE / --vgg FAMILY=FILE, or --allow-random-weights for random features "
            "(tests, benchmarks)")
    if nets.random:
        warn(f"{', '.join(nets.random)} run on RANDOM weights (--weights-seed {weights_seed}); these are not "
             "real features, and the file says so")
    chosen, layers = layers is not None, tuple(layers or DEFAULT_LAYERS)
    named = {f"vgg_{family}": net for family, net in nets.vgg.items()}
    loaded = ({"c3d": nets.c3d} if nets.c3d is not None else {}) | named
    network_layers = {}
    for name, net in loaded.items():
        missing = net.random_layers(layers) if name not in nets.random else []
        if missing:                                  # a file without some layers (R-C3D's: up to fc6)
            held = ", ".join(net.weights.layers)
            real = [layer for layer in layers if not net.random_layers([layer])]
            if not chosen and real:                  # the default layers: read those the file holds
                network_layers[name] = real
                warn(f"{net.weights.file} holds {held}: {name} gives {' '.join(real)} only "
                     f"({', '.join(missing)} would be random weights)")
                continue
            text = (f"{net.weights.file} has no {', '.join(missing)} (it holds {held}): {name}'s "
                    f"--layers {' '.join(layers)} would go through random weights")
            if not allow_random_weights:
                raise ReproduceError(f"{text}; extract the layers it holds (--layers fc6, say), or pass "
                                     "--allow-random-weights")
            warn(f"{text}; the file says so")
    if nets.c3d is not None and "c3d" not in nets.random and not c3d_mean:
        warn("no --c3d-mean; C3D uses the per-channel mean (104, 117, 128), not the release's mean cube")
    extractor = extractor_for(nets, layers, c3d_mean=c3d_mean, flip=flip, device=device,
                              precision=precision, network_layers=network_layers)
    path = out if world == 1 else shard_path(out, rank, world)
    mine = found[rank::world]
    merged = check_existing(out, extractor) if world > 1 else set()
    check_existing(path, extractor)
    if world > 1 and os.path.exists(path + ".done"):
        os.remove(path + ".done")
    attrs = {"generator": "alstm extract", "random_weights": ", ".join(nets.random) or "none"}
    multi = multilabel if class_names is not None else None   # no class list: stored unlabelled
    with FeatureWriter(path, class_names=class_names, multilabel=multi, attrs=attrs) as writer, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)   # said once above, through ``warn``
        summary = extract_videos(
            [(vid, p) for vid, p in mine if vid not in merged], writer, extractor, targets=targets,
            split={vid: splits.get(vid, split) for vid in ids}, batch_size=batch_size, workers=workers,
            queue_size=queue_size, buffer_bytes=int(buffer_mb * 2**20), progress=progress)
    failed, added, all_failed = dict(summary.failed), None, None
    if world > 1:
        write_json(path + ".done", {"videos": [vid for vid, _ in mine], "failed": failed})
        if rank == 0:
            added, all_failed = _merge_shards(out, found, world, progress, warn)
    return Extraction(out if added is not None else path, list(summary.written), list(summary.partial),
                      len(mine) - len(summary.written) - len(failed), failed, summary.frames, summary.seconds,
                      extractor.describe_precision() if summary.written else None, list(nets.random), rank,
                      world, added, all_failed)
