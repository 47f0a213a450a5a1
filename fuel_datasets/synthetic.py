"""The built-in benchmark (`alstm synth`): a generated feature dataset with the structure the paper relies on.

It is a controlled test of the implementation and of highlighting (real data cannot score which frames
matter), not evidence for the paper's claims. Everything is drawn from ``np.random.Generator`` streams
keyed on the seed: ``SeedSequence(seed, spawn_key=(0, f, 0))`` draws family f's feature space,
``(0, f, 1 + multilabel)`` its classes, ``(1,)`` the catalogue (labels and splits) and ``(2, i)`` video i.
The same configuration therefore gives byte-identical arrays, video i does not depend on the others
(generation streams, one video at a time), and the single- and multi-label benchmarks of one seed share
their feature spaces, as ActivityNet and Hollywood2 share the C3D and VGG networks (so fine-tuning
from one to the other is meaningful). Noise and strengths below are in latent units.

**World.** Each family f in ``c3d``, ``vgg_obj``, ``vgg_sce``, ``vgg_act`` has a latent space of
dimension K (``latent_dim``) with
- class prototypes ``p_{f,c}``: independent random unit vectors, (C, K);
- a salience cue ``s_f`` (used by the VGG families): a random unit vector shared by all classes
  ("something is happening in this frame");
- class strengths ``α_{f,c} = {obj,sce,act}_strength · U(1 − class_spread, 1 + class_spread)``, drawn per
  family and class, so that each family sees some classes well and others badly (1 for c3d);
- read-out maps ``A6_f`` (K, D6) and ``A8_f`` (K, D8) with entries ``N(0, 1) · feature_scale / √K``: fc6
  and fc8 are two linear views of the same latent, of different dimensions (fc8 reads like the scores
  of D8 random concepts of the family's own network). ``c3d_fc8`` is by default (``c3d_fc8_dim=None``)
  the class scores of a C3D fine-tuned on the dataset's classes, as in the paper, whose "C3D (fc8)"
  baseline is that network's own softmax: ``A8_c3d = feature_scale · P_c3dᵀ`` (K, C);
- a flip rotation ``Q_f``: the orthogonal factor of ``I + flip_mix · G / √K`` (G standard normal, K × K).

**Catalogue.** Single-label: video i gets class ``π(i) mod C`` for a random permutation π (balanced
classes). Multi-label: k labels with ``P(k) ∝ 2^-k``, k = 1..``max_labels``, drawn without replacement.
Splits: a random permutation cut at ``split_fractions`` (train, valid, test).

**Event layout of a video.** Its length is ``L ~ U{min_frames..max_frames}`` frames at ``fps``. The time
axis is cut into slots of 8 frames, one per attended row (R = ⌈L/8⌉ rows at frames 0, 8, 16, ...). Slots
are filled left to right with runs of U{1..max_run} slots; each run is
- *salient* with probability ``salient_fraction``: it shows one of the video's labels (drawn per run);
- *clutter* with probability ``clutter_fraction``: it shows one of the video's ``distractors`` classes
  (drawn per video among the classes it does not have; one per run);
- *background* otherwise: it shows no class.
So the evidence sits in a minority of frames whose positions vary per video and per window. The
source ``salient`` is the ground truth: (R, 1), 1.0 on salient slots and 0.0 elsewhere.

**Attended features** ``vgg_{obj,sce,act}_{fc6,fc8}``. Family f's latent at slot r is
``z_r = g_r · α_{f,c_r} · p_{f,c_r} + [r salient] · cue_strength · h_r · s_f
+ context_signal · mean_{l ∈ labels} α_{f,l} p_{f,l} + frame_noise · ε_r``, where c_r is the class the
slot shows, ``g_r, h_r ~ U(0.6, 1.4)`` per slot, ε standard normal, all independent per family. On salient
slots g_r is also multiplied by the family's *view* of the video: 1, or ``weak_visibility`` with
probability ``weak_view_prob`` (per video and family), so one family may miss a video that another sees;
on clutter slots by ``clutter_strength``; background slots have g_r = 0. The weak context term is in every
frame (the scene around the action): it lets a plain average learn something, while attending to the
frames that carry the cue recovers far more. Then ``fc6 = z A6_f + ν``, ``fc8 = z A8_f + ν'``, with
``ν ~ N(0, observation_noise²)`` independent per entry.

**Input data** ``c3d_fc6``, ``c3d_fc8``: one row per complete 16-frame chunk j (⌊L/16⌋ rows at frames 0,
16, 32, ...), covering slots 2j and 2j + 1. Its latent is ``c3d_video_signal · mean_{l ∈ labels} p_{c3d,l}``
plus ``c3d_event_signal`` times the mean over the two slots of the prototype of the class a salient slot
shows (0 for other slots), plus ``c3d_clutter_signal`` times the same for clutter slots, plus
``c3d_noise · ε``: each chunk alone is weakly informative, a video's average much more so.

**Flipped frames** ``<source>_flip``: the same latent turned by the family's fixed rotation plus fresh
noise, ``z' = z Q_f + flip_noise · ε``, read out by the same maps with fresh observation noise: close to
the unflipped features (cosine about 0.95), not identical.

**Scale.** ``feature_scale`` sets the magnitude of the features (about 4 per entry by default), like
real fc6/fc8 activations; the model's sigmoid input layer learns far more slowly from features of unit
scale. Targets are the class index, or (C,) float32 multi-hot with ``multilabel``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from alstm_core import storage
from alstm_core.storage import CHUNK_FRAMES, FLIP_SUFFIX, SPLITS, source_name

from .errors import DatasetError

VGG_FAMILIES = tuple(f"vgg_{family}" for family in storage.VGG_FAMILIES)   # vgg_obj, vgg_sce, vgg_act
SLOT_FRAMES = storage.ATTENDED_STRIDE   # attended rows: one every 8 frames; input rows: one per chunk
BACKGROUND, SALIENT, CLUTTER = 0, 1, 2
# c3d_fc8 stays the class scores (C columns), as the paper's C3D fine-tuned on ActivityNet (203 classes);
# each VGG family's fc8 has the classes of its release
PAPER_DIMS = dict(c3d_fc6_dim=4096, vgg_fc6_dim=4096,
                  **{f"vgg_{family}_fc8_dim": classes for family, classes in storage.VGG_FAMILIES.items()})


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of the generator (see the module docstring), stored as file attributes
    ``synth_<name>`` and as one JSON attribute ``synth_config``. The defaults make the quick experiments
    run in minutes on 2 cores; dims and class counts go up to the paper's (``PAPER_DIMS``, 203 classes;
    raise ``latent_dim`` with the class count to keep the classes apart)."""

    num_classes: int = 20
    num_videos: int = 600
    seed: int = 0
    multilabel: bool = False
    max_labels: int = 3
    min_frames: int = 192
    max_frames: int = 480
    fps: float = 30.0
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    latent_dim: int = 32
    c3d_fc6_dim: int = 128
    c3d_fc8_dim: int | None = None
    vgg_fc6_dim: int = 96
    vgg_obj_fc8_dim: int = 40
    vgg_sce_fc8_dim: int = 32
    vgg_act_fc8_dim: int = 36
    salient_fraction: float = 0.25
    clutter_fraction: float = 0.35
    max_run: int = 3
    distractors: int = 2
    clutter_strength: float = 0.8
    obj_strength: float = 0.9
    sce_strength: float = 0.8
    act_strength: float = 1.0
    class_spread: float = 0.5
    weak_view_prob: float = 0.25
    weak_visibility: float = 0.3
    cue_strength: float = 1.0
    context_signal: float = 0.12
    frame_noise: float = 0.35
    c3d_video_signal: float = 0.11
    c3d_event_signal: float = 0.2
    c3d_clutter_signal: float = 0.05
    c3d_noise: float = 0.35
    observation_noise: float = 0.05
    feature_scale: float = 12.0
    flip_mix: float = 0.3
    flip_noise: float = 0.05

    def __post_init__(self):
        problems = []
        for name in ("num_classes", "num_videos", "max_labels", "latent_dim", "max_run", "c3d_fc6_dim",
                     "c3d_fc8_dim", "vgg_fc6_dim", "vgg_obj_fc8_dim", "vgg_sce_fc8_dim", "vgg_act_fc8_dim"):
            if name == "c3d_fc8_dim" and self.c3d_fc8_dim is None:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("seed", "distractors"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.num_classes < 2 + self.distractors:
            problems.append(f"num_classes must be at least 2 + distractors = {2 + self.distractors}, "
                            f"got {self.num_classes}")
        if self.multilabel and self.max_labels + self.distractors > self.num_classes:
            problems.append(f"max_labels + distractors ({self.max_labels} + {self.distractors}) exceeds "
                            f"num_classes ({self.num_classes})")
        if not CHUNK_FRAMES <= self.min_frames <= self.max_frames:
            problems.append(f"need {CHUNK_FRAMES} <= min_frames <= max_frames, got {self.min_frames}, "
                            f"{self.max_frames}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or \
                not math.isclose(sum(self.split_fractions), 1.0, abs_tol=1e-6):
            problems.append(f"split_fractions must be three non-negative numbers summing to 1 "
                            f"(train, valid, test), got {self.split_fractions}")
        if self.salient_fraction <= 0 or self.clutter_fraction < 0 or \
                self.salient_fraction + self.clutter_fraction > 1:
            problems.append("need salient_fraction > 0, clutter_fraction >= 0 and their sum <= 1, got "
                            f"{self.salient_fraction} and {self.clutter_fraction}")
        if self.fps <= 0:
            problems.append(f"fps must be positive, got {self.fps}")
        if problems:
            raise DatasetError("invalid benchmark configuration: " + "; ".join(problems))

    def fc8_dim(self, family: str) -> int:
        return {"c3d": self.c3d_fc8_dim or self.num_classes, "vgg_obj": self.vgg_obj_fc8_dim,
                "vgg_sce": self.vgg_sce_fc8_dim, "vgg_act": self.vgg_act_fc8_dim}[family]

    def fc6_dim(self, family: str) -> int:
        return self.c3d_fc6_dim if family == "c3d" else self.vgg_fc6_dim

    def strength_of(self, family: str) -> float:
        return {"c3d": 1.0, "vgg_obj": self.obj_strength, "vgg_sce": self.sce_strength,
                "vgg_act": self.act_strength}[family]

    def source_dims(self) -> dict[str, int]:
        """Every feature source and its D (flip variants included), plus ``salient`` (D = 1)."""
        dims = {}
        for family in ("c3d", *VGG_FAMILIES):
            for layer, dim in (("fc6", self.fc6_dim(family)), ("fc8", self.fc8_dim(family))):
                dims[source_name(family, layer)] = dim
                dims[source_name(family, layer, flip=True)] = dim
        dims["salient"] = 1
        return dims

    def attributes(self) -> dict[str, object]:
        """The parameters as HDF5-friendly scalars (tuples become lists of floats)."""
        attrs = {f"synth_{key}": (list(value) if isinstance(value, tuple) else value)
                 for key, value in dataclasses.asdict(self).items()}
        attrs["synth_c3d_fc8_dim"] = self.fc8_dim("c3d")
        attrs["generator"] = "fuel_datasets.synthetic (alstm synth)"
        return attrs


@dataclass(frozen=True)
class Family:
    """One feature family's world: prototypes (C, K), cue (K,), strength (C,), maps (K, D6), (K, D8),
    flip rotation (K, K)."""

    prototypes: np.ndarray
    cue: np.ndarray
    strength: np.ndarray
    fc6_map: np.ndarray
    fc8_map: np.ndarray
    flip_rotation: np.ndarray


@dataclass(frozen=True)
class VideoPlan:
    """The event layout of one video: ``slot_kind`` (R,) int8 in {BACKGROUND, SALIENT, CLUTTER},
    ``slot_class`` (R,) int64 (−1 on background), ``visibility`` per VGG family."""

    video_id: str
    num_frames: int
    labels: tuple[int, ...]
    split: str
    slot_kind: np.ndarray
    slot_class: np.ndarray
    visibility: dict[str, float]


@dataclass(frozen=True)
class SynthVideo:
    """One generated video, in the arguments of ``FeatureWriter.add_video``."""

    plan: VideoPlan
    features: dict[str, np.ndarray]
    frame_index: dict[str, np.ndarray]
    targets: int | np.ndarray


def _rng(config: SynthConfig, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(config.seed, spawn_key=key)))


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_world(config: SynthConfig) -> dict[str, Family]:
    """The fixed parts of the benchmark, per family (``c3d`` and the three VGG families).

    A family's feature space (cue, read-out maps, flip rotation) depends on the seed, the dims and the
    latent size, not on the classes (c3d_fc8, the class scores, aside): the single-label and the
    multi-label benchmark of one seed share it, as ActivityNet and Hollywood2 share the C3D and VGG
    networks, so a model trained on one can be fine-tuned on the other. The classes (prototypes,
    strengths) are drawn per variant.
    """
    k = config.latent_dim
    scale = config.feature_scale / math.sqrt(k)
    world = {}
    for number, family in enumerate(("c3d", *VGG_FAMILIES)):
        rng = _rng(config, 0, number, 0)
        cue = _unit_rows(rng, 1, k)[0]                                                        # (K,)
        fc6_map = rng.standard_normal((k, config.fc6_dim(family))) * scale                   # (K, D6)
        class_scores = family == "c3d" and config.c3d_fc8_dim is None
        fc8_map = None if class_scores else rng.standard_normal((k, config.fc8_dim(family))) * scale
        q, r = np.linalg.qr(np.eye(k) + config.flip_mix / math.sqrt(k) * rng.standard_normal((k, k)))
        flip_rotation = q * np.sign(np.diag(r))                                               # (K, K) near I
        rng = _rng(config, 0, number, 1 + int(config.multilabel))
        prototypes = _unit_rows(rng, config.num_classes, k)                                   # (C, K)
        spread = rng.uniform(1 - config.class_spread, 1 + config.class_spread, config.num_classes)
        strength = config.strength_of(family) * spread                                        # (C,)
        if class_scores:   # c3d_fc8 as the scores of a C3D fine-tuned on the dataset's classes
            fc8_map = prototypes.T * config.feature_scale                                     # (K, C)
        world[family] = Family(prototypes, cue, strength, fc6_map, fc8_map, flip_rotation)
    return world


def make_catalogue(config: SynthConfig) -> tuple[list[tuple[int, ...]], list[str]]:
    """Labels and split of every video (small: a few integers per video)."""
    rng = _rng(config, 1)
    count, classes = config.num_videos, config.num_classes
    if config.multilabel:
        sizes = np.arange(1, config.max_labels + 1)
        probs = 2.0 ** -sizes / np.sum(2.0 ** -sizes)
        labels = [tuple(sorted(int(c) for c in rng.choice(classes, size=rng.choice(sizes, p=probs),
                                                          replace=False)))
                  for _ in range(count)]
    else:
        labels = [(int(c),) for c in rng.permutation(np.arange(count) % classes)]
    order = rng.permutation(count)
    n_train = round(config.split_fractions[0] * count)
    n_valid = round(config.split_fractions[1] * count)
    splits = [""] * count
    train, valid, test = SPLITS
    for position, index in enumerate(order):
        splits[index] = train if position < n_train else valid if position < n_train + n_valid else test
    return labels, splits


def video_id(index: int) -> str:
    return f"v_synth{index:06d}"


def plan_video(config: SynthConfig, index: int, labels: tuple[int, ...], split: str,
               rng: np.random.Generator) -> VideoPlan:
    """Draw the length and the slot layout of video ``index`` (see the module docstring)."""
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    num_slots = -(-num_frames // SLOT_FRAMES)
    others = np.setdiff1d(np.arange(config.num_classes), labels)
    distractors = rng.choice(others, size=config.distractors, replace=False)
    kind = np.empty(num_slots, np.int8)
    shown = np.empty(num_slots, np.int64)
    position = 0
    while position < num_slots:
        run = int(rng.integers(1, config.max_run + 1))
        draw = rng.random()
        if draw < config.salient_fraction:
            run_kind, run_class = SALIENT, labels[int(rng.integers(len(labels)))]
        elif draw < config.salient_fraction + config.clutter_fraction and len(distractors):
            run_kind, run_class = CLUTTER, int(distractors[int(rng.integers(len(distractors)))])
        else:
            run_kind, run_class = BACKGROUND, -1
        kind[position:position + run] = run_kind
        shown[position:position + run] = run_class
        position += run
    weak = rng.random(len(VGG_FAMILIES)) < config.weak_view_prob
    visibility = {f: (config.weak_visibility if w else 1.0) for f, w in zip(VGG_FAMILIES, weak, strict=True)}
    return VideoPlan(video_id(index), num_frames, tuple(labels), split, kind, shown, visibility)


def attended_latents(config: SynthConfig, family: Family, plan: VideoPlan, visibility: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Per-slot latent of one VGG family: (R, K)."""
    num_slots = len(plan.slot_kind)
    gain = rng.uniform(0.6, 1.4, num_slots)
    cue_gain = rng.uniform(0.6, 1.4, num_slots)
    noise = rng.standard_normal((num_slots, config.latent_dim))
    salient = plan.slot_kind == SALIENT
    gain *= np.where(salient, visibility, np.where(plan.slot_kind == CLUTTER, config.clutter_strength, 0.0))
    shown = np.maximum(plan.slot_class, 0)
    z = (gain * family.strength[shown])[:, None] * family.prototypes[shown]                   # (R, K)
    z += (salient * cue_gain * config.cue_strength)[:, None] * family.cue
    labels = list(plan.labels)
    z += config.context_signal * (family.strength[labels, None] * family.prototypes[labels]).mean(axis=0)
    return z + config.frame_noise * noise


def input_latents(config: SynthConfig, family: Family, plan: VideoPlan,
                  rng: np.random.Generator) -> np.ndarray:
    """Per-chunk latent of the C3D family: (⌊L/16⌋, K); chunk j covers slots 2j and 2j + 1."""
    num_chunks = plan.num_frames // CHUNK_FRAMES
    slots = np.arange(2 * num_chunks)
    shown = family.prototypes[np.maximum(plan.slot_class[slots], 0)]                         # (2J, K)
    kind = plan.slot_kind[slots]
    per_slot = ((config.c3d_event_signal * (kind == SALIENT)
                 + config.c3d_clutter_signal * (kind == CLUTTER))[:, None] * shown)
    z = per_slot.reshape(num_chunks, 2, -1).mean(axis=1)                                      # (J, K)
    z += config.c3d_video_signal * family.prototypes[list(plan.labels)].mean(axis=0)
    return z + config.c3d_noise * rng.standard_normal((num_chunks, config.latent_dim))


def read_out(config: SynthConfig, family: Family, latents: np.ndarray, rng: np.random.Generator,
             flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """fc6 (R, D6) and fc8 (R, D8) float32 of a family's latents (R, K), or of their flipped view."""
    if flip:
        latents = latents @ family.flip_rotation + config.flip_noise * rng.standard_normal(latents.shape)
    fc6 = latents @ family.fc6_map
    fc6 += config.observation_noise * rng.standard_normal(fc6.shape)
    fc8 = latents @ family.fc8_map
    fc8 += config.observation_noise * rng.standard_normal(fc8.shape)
    return fc6.astype(np.float32), fc8.astype(np.float32)


def synthesize_video(config: SynthConfig, world: dict[str, Family], index: int, labels: tuple[int, ...],
                     split: str) -> SynthVideo:
    """Video ``index``, a pure function of (config, index, its labels and split)."""
    rng = _rng(config, 2, index)
    plan = plan_video(config, index, labels, split, rng)
    latents = {"c3d": input_latents(config, world["c3d"], plan, rng)}
    for family in VGG_FAMILIES:
        latents[family] = attended_latents(config, world[family], plan, plan.visibility[family], rng)
    features, frame_index = {}, {}
    for family, z in latents.items():
        step = storage.row_stride(family)
        for flip in (False, True):
            fc6, fc8 = read_out(config, world[family], z, rng, flip)
            features[source_name(family, "fc6", flip)], features[source_name(family, "fc8", flip)] = fc6, fc8
        for layer in ("fc6", "fc8"):
            frame_index[source_name(family, layer)] = np.arange(len(z), dtype=np.int64) * step
    features["salient"] = (plan.slot_kind == SALIENT).astype(np.float32)[:, None]             # (R, 1)
    frame_index["salient"] = np.arange(len(plan.slot_kind), dtype=np.int64) * SLOT_FRAMES
    if config.multilabel:
        targets = np.zeros(config.num_classes, np.float32)
        targets[list(labels)] = 1.0
    else:
        targets = labels[0]
    return SynthVideo(plan, features, frame_index, targets)


def class_names(config: SynthConfig) -> list[str]:
    return [f"action{c:03d}" for c in range(config.num_classes)]


def iter_videos(config: SynthConfig, start: int = 0) -> Iterator[SynthVideo]:
    """Videos ``start``, ``start + 1``, ... one at a time (memory does not grow with ``num_videos``)."""
    world = make_world(config)
    labels, splits = make_catalogue(config)
    for index in range(start, config.num_videos):
        yield synthesize_video(config, world, index, labels[index], splits[index])


def source_info(source: str) -> dict[str, object]:
    """What ``set_source_info`` records for a generated source (the flip variants inherit it)."""
    if source == "salient":
        return dict(network="synthetic", layer="salient", chunk_length=1, stride=SLOT_FRAMES,
                    description="1.0 on frames that carry the class evidence, 0.0 elsewhere")
    family, layer = source.rsplit("_", 1)
    length = CHUNK_FRAMES if family == "c3d" else 1
    stride = storage.row_stride(family)
    return dict(network=f"synthetic {family}", layer=layer, chunk_length=length, stride=stride)


def write_synthetic(path, config: SynthConfig, progress=None, overwrite: bool = False) -> int:
    """Generate the benchmark into ``path`` (our layout) video by video; returns the videos written.

    An existing file made with the same configuration is completed (the videos it holds are kept, so an
    interrupted run resumes); one made otherwise is an error, unless ``overwrite`` (which starts anew).
    ``progress(n)`` is called after each video.
    """
    import json
    import os

    from .opening import open_dataset
    from .writer import FeatureWriter

    if overwrite:
        for stale in (os.fspath(path), f"{os.fspath(path)}.tmp"):
            if os.path.exists(stale):
                os.remove(stale)

    attrs = config.attributes()
    attrs["synth_config"] = json.dumps(dataclasses.asdict(config), sort_keys=True)
    if os.path.exists(path):
        with open_dataset(path) as existing:
            stored = getattr(existing, "attrs", {}).get("synth_config")
        if stored != attrs["synth_config"]:
            raise DatasetError(f"{path} exists and was not generated with these parameters; remove it or "
                               "choose another output path")
    written = 0
    with FeatureWriter(path, class_names=class_names(config), multilabel=config.multilabel, attrs=attrs) as w:
        for source in config.source_dims():
            if not source.endswith(FLIP_SUFFIX):
                w.set_source_info(source, **source_info(source))
        start = w.num_videos   # videos are written in index order, so the first missing one is here
        for video in iter_videos(config, start):
            if not w.has_video(video.plan.video_id):
                w.add_video(video.plan.video_id, video.features, video.frame_index, video.plan.num_frames,
                            config.fps, video.targets, video.plan.split)
                written += 1
            if progress is not None:
                progress(1)
    return written
