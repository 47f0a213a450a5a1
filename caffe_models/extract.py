"""Videos → C3D and VGG-19 features, committed video by video: the engine of `alstm extract`.

Data flow:

    video files ─▶ decode workers (threads, ``video.decode_in_background``): 16-frame chunks
                   (16, H, W, 3) uint8 RGB into bounded queues (pinned memory on CUDA)
      ─▶ main thread, per video: batches of B chunks (B, 16, H, W, 3) ─▶ device
           ├─ C3D:    preprocess_c3d(clips)              → (B, D) rows   c3d_<layer>
           ├─ VGG-19: preprocess_vgg(frames 0, 8 of each) → (2B, D) rows vgg_<family>_<layer>
           └─ the same on horizontally flipped frames     →              <source>_flip
      ─▶ all rows of the video ─▶ writer.add_video(...)   (one commit per video)

Storage convention (docs/paper.md §1, ``alstm_core.storage``): C3D rows are the consecutive, non-overlapping
16-frame clips (frame_index 0, 16, 32, …); attended rows are one frame every 8 (frame_index 0, 8, …)
inside those clips, so windows with T = N and T = 2N both read from the same file. The flip is a
horizontal flip of the decoded frames before any preprocessing (so the mean cube is subtracted
unflipped, unlike Caffe's ``mirror``).

The writer is any object with ``has_video(id)``, ``set_source_info(source, **attrs)`` and
``add_video(id, features=, frame_index=, num_frames=, fps=, targets=, split=)`` (the project's
``FeatureWriter``); this package does not import the dataset package.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from alstm_core.progress import progress_bar, progress_message
from alstm_core.storage import ATTENDED_STRIDE, CHUNK_FRAMES, LAYERS, source_name
from caffe_models.c3d import C3D
from caffe_models.errors import CaffeModelError
from caffe_models.prefetch import decode_in_background
from caffe_models.preprocess import C3D_MEAN_BGR, preprocess_c3d, preprocess_vgg
from caffe_models.sampling import sample_frames
from caffe_models.vgg import VGG19
from caffe_models.video import FrameChunk

# The storage convention (alstm_core.storage); ATTENDED_STRIDE, imported above, is exported from here too.
CHUNK_LENGTH = CHUNK_FRAMES  # frames per C3D clip (docs/paper.md §1: one LSTM step)
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTO_TOLERANCE = 1e-2  # "auto" keeps autocast if max |low − float32| ≤ this × max |float32|, per layer


class SourceSpec(NamedTuple):
    """One feature source: which network (``"c3d"`` or ``"vgg_<family>"``), which Caffe layer it reads,
    its dimension D, and whether it holds the flipped frames."""

    network: str
    layer: str
    dim: int
    flip: bool


class ExtractSummary(NamedTuple):
    """What one run did. ``written``: ids committed by this run (including ``partial`` ones, which hold
    the readable part of a damaged file; id → problems); ``skipped``: ids already in the file;
    ``failed``: path → why nothing was written; ``frames``: frames decoded; ``seconds``: wall time."""

    written: list[str]
    skipped: list[str]
    partial: dict[str, list[str]]
    failed: dict[str, str]
    frames: int
    seconds: float


class FeatureExtractor:
    """The networks, the layers they give, and their preprocessing on one device.

    ``c3d``: a ``C3D`` or None; ``vgg``: {family: ``VGG19``} (``obj``, ``sce``, ``act``, …);
    ``layers``: layer names read from every network (``fc6``, ``fc7``, ``fc8``; C3D's are read as its
    release names ``fc6-1`` …); ``network_layers`` {network name: layers} reads other layers from some
    networks (a weight file without fc8, such as R-C3D's C3D, gives fc6 only). ``c3d_mean``: the
    release's mean cube (3, 16, 128, 171) from ``load_mean``, or 3 BGR values; ``mean_description``
    says which, for the file's metadata, and ``mean_path`` where a mean file is (recorded too, as the
    weight files' paths are).
    ``precision``: ``float32``, or ``bfloat16`` / ``float16`` autocast for the networks (preprocessing
    stays float32), or ``auto``: on the first batch each network runs in float32 and with ``auto_dtype``
    autocast, and keeps autocast only if every layer stays within ``tolerance`` (relative to its largest
    float32 value); the choice is recorded in ``source_info``. ``auto_dtype`` None means float32 (the
    choice on a CPU without native bfloat16; `alstm extract` passes bfloat16 on one with it, float16 on
    CUDA). ``channels_last``: the networks and their input in channels_last_3d (C3D) and channels_last
    (VGG-19), the layouts of oneDNN's and cuDNN's fast convolutions: on the CPU 1.2–1.3× as fast as
    contiguous tensors in float32 and bfloat16 autocast, with features as close to a float64 pass
    (benchmarks/bench_finetune.py, ``layout``); False keeps them contiguous. The networks are moved to
    ``device`` and their format in
    place, in eval mode.
    """

    def __init__(
        self,
        c3d: C3D | None = None,
        vgg: Mapping[str, VGG19] | None = None,
        layers: Sequence[str] = ("fc6", "fc8"),
        *,
        c3d_mean=C3D_MEAN_BGR,
        mean_description: str = f"per-channel BGR {C3D_MEAN_BGR} (approximates the release's mean cube)",
        mean_path: str | None = None,
        flip: bool = True,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        auto_dtype: torch.dtype | None = None,
        tolerance: float = AUTO_TOLERANCE,
        channels_last: bool = True,
        attended_stride: int = ATTENDED_STRIDE,
        network_layers: Mapping[str, Sequence[str]] | None = None,
    ):
        vgg = dict(vgg or {})
        if c3d is None and not vgg:
            raise CaffeModelError("no network to extract with: give C3D and/or at least one VGG-19 family")
        if precision not in PRECISIONS and precision != "auto":
            raise CaffeModelError(f"precision {precision!r} is not one of auto, {', '.join(PRECISIONS)}")
        if not layers or any(layer not in LAYERS for layer in layers):
            raise CaffeModelError(f"layers {list(layers)}: choose among {', '.join(LAYERS)}")
        self.device = torch.device(device)
        self.c3d, self.vgg, self.layers = c3d, vgg, tuple(layers)
        self.network_layers = {name: tuple(value) for name, value in (network_layers or {}).items()}
        if any(not value or set(value) - set(LAYERS) for value in self.network_layers.values()):
            raise CaffeModelError(f"network_layers {network_layers}: choose among {', '.join(LAYERS)}")
        self.c3d_mean, self.mean_description, self.mean_path = c3d_mean, mean_description, mean_path
        self.flip, self.channels_last = flip, channels_last
        self.auto_dtype, self.tolerance = auto_dtype, tolerance
        # network → (autocast dtype or None, how it was chosen); "auto" networks are decided on first use
        self.precision: dict[str, tuple[torch.dtype | None, str]] = {}
        self.offsets = sample_frames(CHUNK_LENGTH, CHUNK_LENGTH, attended_stride).attended  # (A,) 0, 8
        self.attended_stride = attended_stride
        self._memory_format = {}
        for name, net in self.networks().items():
            fast = torch.channels_last_3d if isinstance(net, C3D) else torch.channels_last
            self._memory_format[name] = fast if channels_last else torch.contiguous_format
            net.to(self.device, memory_format=self._memory_format[name]).eval()
            if precision != "auto":
                self.precision[name] = (PRECISIONS[precision], "requested")
            elif auto_dtype is None:
                self.precision[name] = (None, "auto")
        if c3d is not None and tuple(c3d.input_shape[1:]) != (CHUNK_LENGTH, 112, 112):
            raise CaffeModelError(
                f"C3D takes clips {tuple(c3d.input_shape)}; extraction feeds (3, 16, 112, 112)")

    def networks(self) -> dict[str, torch.nn.Module]:
        """{"c3d": C3D, "vgg_<family>": VGG19}, in the order their sources are listed."""
        nets: dict[str, torch.nn.Module] = {"c3d": self.c3d} if self.c3d is not None else {}
        nets.update({f"vgg_{family}": net for family, net in self.vgg.items()})
        return nets

    @property
    def sources(self) -> dict[str, SourceSpec]:
        """{source name: SourceSpec}: ``<network>_<layer>`` and, with ``flip``, ``<network>_<layer>_flip``."""
        out = {}
        for name, net in self.networks().items():
            for layer in self.layers_of(name):
                caffe_layer = f"{layer}-1" if name == "c3d" else layer  # the release's names
                dim = getattr(net, layer).out_features
                for flip in (False, True) if self.flip else (False,):
                    out[source_name(name, layer, flip)] = SourceSpec(name, caffe_layer, dim, flip)
        return out

    def source_info(self) -> dict[str, dict[str, Any]]:
        """{source: attributes} recorded in the file (``FeatureWriter.set_source_info``)."""
        info = {}
        for source, spec in self.sources.items():
            net = self.networks()[spec.network]
            is_c3d = spec.network == "c3d"
            attrs = {
                "network": "C3D" if is_c3d else f"VGG19 ({spec.network.removeprefix('vgg_')})",
                "layer": spec.layer,
                "chunk_length": CHUNK_LENGTH if is_c3d else 1,
                "stride": CHUNK_LENGTH if is_c3d else self.attended_stride,
                "weights": net.weights_description,
                "real_weights": not net.random_layers([spec.layer]),
                "flipped": spec.flip,
                "precision": self._precision_text(spec.network),
                "preprocessing": (
                    f"RGB→BGR, resize 128×171, mean {self.mean_description}, crop 112 at (8, 29)"
                    if is_c3d else f"RGB→BGR, resize {net.input_shape[-1]}² minus the mean pixel"),
            }
            if net.weights is not None and net.weights.path:
                attrs["weights_path"] = net.weights.path
            if is_c3d and self.mean_path:
                attrs |= {"mean": self.mean_description, "mean_path": self.mean_path}
            info[source] = attrs
        return info

    def random_networks(self) -> list[str]:
        """Names of the networks whose requested layers go through random weights (no weight file loaded,
        or a file without some of those layers)."""
        return [name for name, net in self.networks().items() if net.random_layers(self.layers_of(name))]

    def layers_of(self, name: str) -> tuple[str, ...]:
        """The layers read from network ``name`` ("c3d", "vgg_obj", …): ``network_layers``' or ``layers``."""
        return self.network_layers.get(name, self.layers)

    def prepare(self, chunk: FrameChunk) -> torch.Tensor | None:
        """Run in a decode worker: a complete chunk as a (16, H, W, 3) uint8 tensor (pinned on CUDA so the
        copy overlaps), None for a short last chunk (its frames are not sampled)."""
        if len(chunk.frames) < CHUNK_LENGTH:
            return None
        clip = torch.from_numpy(chunk.frames)
        return clip.pin_memory() if self.device.type == "cuda" else clip

    def frame_index(self, num_frames: int) -> dict[str, np.ndarray]:
        """{unflipped source: (rows,) int64 first frame of each row} for a video of ``num_frames``."""
        sampling = sample_frames(num_frames, CHUNK_LENGTH, self.attended_stride)
        return {
            source: sampling.chunk_starts if spec.network == "c3d" else sampling.attended
            for source, spec in self.sources.items()
            if not spec.flip
        }

    @torch.inference_mode()
    def __call__(self, clips: Sequence[torch.Tensor] | torch.Tensor) -> dict[str, np.ndarray]:
        """Features of B clips, each (16, H, W, 3) uint8 RGB (one video: same H, W).

        Returns {source: (rows, D) float32}: B rows for C3D sources, B·A rows for VGG sources (A = 2
        attended frames per clip, clip-major: clip 0 frame 0, clip 0 frame 8, clip 1 frame 0, …).
        """
        if isinstance(clips, torch.Tensor):
            x = clips.to(self.device, non_blocking=True)
        else:
            x = torch.stack([c.to(self.device, non_blocking=True) for c in clips])  # (B, 16, H, W, 3)
        B = x.shape[0]
        views = [x, x.flip(3)] if self.flip else [x]  # horizontal flip of the decoded frames
        frames = x[:, torch.as_tensor(self.offsets, device=self.device)]  # (B, A, H, W, 3)
        frames = frames.reshape(-1, *x.shape[2:])  # (B·A, H, W, 3)
        frame_views = [frames, frames.flip(2)] if self.flip else [frames]
        out: dict[str, np.ndarray] = {}
        for name, net in self.networks().items():
            if name == "c3d":
                batch = torch.cat([preprocess_c3d(v, self.c3d_mean) for v in views])  # (V·B, 3, 16, 112, 112)
            else:
                size = net.input_shape[-1]
                batch = torch.cat([preprocess_vgg(v, size=size) for v in frame_views])  # (V·B·A, 3, S, S)
            batch = batch.contiguous(memory_format=self._memory_format[name])
            names = [f"{layer}-1" if name == "c3d" else layer for layer in self.layers_of(name)]
            if name not in self.precision:
                feats = self._choose_precision(name, net, batch, names)
            else:
                with self._autocast(self.precision[name][0]):
                    feats = net.features(batch, names)
            rows = B if name == "c3d" else len(frames)
            for layer, value in zip(self.layers_of(name), feats.values(), strict=True):
                value = value.float().cpu().numpy()  # (V·rows, D)
                out[source_name(name, layer)] = value[:rows]
                if self.flip:
                    out[source_name(name, layer, flip=True)] = value[rows:]
        return out

    def _autocast(self, dtype: torch.dtype | None):
        """Autocast to ``dtype``, or true float32 for None: on CUDA torch lets cuDNN convolutions use
        TF32 by default (a 10-bit mantissa), which "float32" must not."""
        if dtype is not None:
            return torch.autocast(self.device.type, dtype=dtype)
        if self.device.type == "cuda":
            return _without_tf32()
        return contextlib.nullcontext()

    def _choose_precision(self, name: str, net, batch: torch.Tensor, names: list[str]) -> dict:
        """Run ``batch`` in float32 and with ``auto_dtype`` autocast; keep autocast for ``name`` if every
        layer stays within tolerance. Returns the float32 features (this batch is exact either way)."""
        with self._autocast(None):
            exact = net.features(batch, names)
        with self._autocast(self.auto_dtype):
            low = net.features(batch, names)
        worst = max(float((low[k].float() - exact[k]).abs().max() / exact[k].abs().max().clamp_min(1e-12))
                    for k in names)
        label = str(self.auto_dtype).removeprefix("torch.")
        how = f"auto: {label} deviates {worst:.1e} of the float32 scale (tolerance {self.tolerance:g})"
        self.precision[name] = (self.auto_dtype if worst <= self.tolerance else None, how)
        return exact

    def describe_precision(self) -> str:
        """One line: each network's precision and how it was chosen."""
        return "; ".join(f"{name} {self._precision_text(name)}" for name in self.networks())

    def _precision_text(self, name: str) -> str:
        if name not in self.precision:
            return "auto (not decided: no batch ran)"
        dtype, how = self.precision[name]
        return f"{'float32' if dtype is None else str(dtype).removeprefix('torch.') + ' autocast'} ({how})"


@contextlib.contextmanager
def _without_tf32():
    """CUDA matrix products and cuDNN convolutions in full float32 within the block."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def extract_videos(
    videos: Sequence[tuple[str, str]],
    writer,
    extractor: FeatureExtractor,
    *,
    targets: Mapping[str, Any] | None = None,
    split: str | Mapping[str, str] = "test",
    batch_size: int = 8,
    workers: int = 1,
    queue_size: int = 4,
    buffer_bytes: int = 0,
    decoder_threads: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ExtractSummary:
    """Extract every (video id, path) of ``videos`` that ``writer`` does not hold yet, in order, into
    ``split`` (one for all, or {video id: split}).

    ``batch_size``: clips per network call (each also flipped, so C3D sees 2B clips and each VGG-19 4B
    frames); ``workers``: decode threads; ``queue_size``: chunks each may hold ready; ``buffer_bytes``:
    decoded frames the workers may hold ahead beyond that, all together (what lets several workers
    decode at once on a GPU that computes faster than one decodes; see ``decode_in_background``);
    ``decoder_threads``: FFmpeg's own threads per video (0: FFmpeg decides). A video that cannot be
    decoded, or has fewer than 16 frames, is reported through ``log`` and counted in ``failed``; a
    damaged one is written with what was readable and counted in ``partial``. Each video is committed
    alone, so a killed run loses at most the video in flight. ``targets``: {video id: label index or
    (C,) multi-hot}; ids missing get None.
    """
    start_time = time.perf_counter()
    say = log or progress_message
    skipped = [vid for vid, _ in videos if writer.has_video(vid)]
    todo = [(vid, str(path)) for vid, path in videos if not writer.has_video(vid)]
    written, partial, failed, frames_total = [], {}, {}, 0
    bar = progress_bar(total=len(todo), unit="video", desc="extract", enabled=progress)
    decoded = decode_in_background(
        [path for _, path in todo], extractor.prepare, CHUNK_LENGTH, workers, queue_size, decoder_threads,
        buffer_bytes,
    )
    try:
        for video in decoded:
            vid, path = todo[video.index]
            if video.error is not None:
                failed[path] = video.error.removeprefix(f"{path}: ")
                say(f"skipped {path}: {failed[path]}")
                bar.update(1)
                continue
            rows = _video_rows(video.items, extractor, batch_size)
            num_frames, problems = video.report["frames_decoded"], video.report["problems"]
            frames_total += num_frames
            if num_frames < CHUNK_LENGTH:
                failed[path] = f"only {num_frames} decodable frames; a C3D clip needs {CHUNK_LENGTH}" + (
                    f" ({'; '.join(problems)})" if problems else ""
                )
                say(f"skipped {path}: {failed[path]}")
                bar.update(1)
                continue
            if not written:  # after the first batch: "auto" precision is decided by now
                for source, attrs in extractor.source_info().items():
                    writer.set_source_info(source, **attrs)
            writer.add_video(
                vid,
                features={source: np.concatenate(parts) for source, parts in rows.items()},
                frame_index=extractor.frame_index(num_frames),
                num_frames=num_frames,
                fps=float(video.info.fps) if video.info.fps > 0 else float("nan"),  # NaN: unknown
                targets=None if targets is None else targets.get(vid),
                split=split if isinstance(split, str) else split[vid],
            )
            written.append(vid)
            if problems:
                partial[vid] = problems
                say(f"warning: {path}: stored the readable part ({num_frames} frames): {'; '.join(problems)}")
            bar.update(1)
            elapsed = time.perf_counter() - start_time
            bar.set_postfix_str(f"{frames_total / max(elapsed, 1e-9):.0f} frames/s", refresh=False)
    finally:
        decoded.close()
        bar.close()
    return ExtractSummary(written, skipped, partial, failed, frames_total, time.perf_counter() - start_time)


def _video_rows(clips, extractor: FeatureExtractor, batch_size: int) -> dict[str, list[np.ndarray]]:
    """{source: [(r, D) rows of each network call]} of one video's decoded clips (None items: incomplete
    chunks, skipped), ``batch_size`` clips per call; empty lists for a video without a complete clip."""
    rows: dict[str, list[np.ndarray]] = {source: [] for source in extractor.sources}
    pending: list[torch.Tensor] = []

    def run() -> None:
        for source, value in extractor(pending).items():
            rows[source].append(value)
        pending.clear()

    for clip in clips:
        if clip is not None:
            pending.append(clip)
        if len(pending) == batch_size:
            run()
    if pending:
        run()
    return rows
