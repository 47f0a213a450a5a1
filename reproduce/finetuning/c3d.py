"""C3D fine-tuned as C3D v1.0's ``examples/c3d_finetuning`` does it (docs/formats.md §6): the network the
paper's C3D features came from (C3D fine-tuned on ActivityNet with the C3D v1.0 tools).

The network (`finetune_network`): `caffe_models.C3D` with

- conv1a … conv5b copied by name from the pre-trained weights (the Sports-1M release,
  ``conv3d_deepnetA_sport1m_iter_1900000``, or R-C3D's BVLC-format file), as ``Net::CopyTrainedLayersFrom``
  does; their widths are read from the file;
- fc6, fc7, fc8 from Caffe's fillers, since the example names them ``fc6``/``fc7``/``fc8`` while the
  release has ``fc6-1``/``fc7-1``/``fc8-1``, so copying by name leaves them alone (intended, per the
  maintainer): Gaussian std 0.005, bias 1 for fc6 and fc7 (4096 wide); std 0.01, bias 0 for fc8, sized to
  the dataset's classes. ``keep_fc=True`` [choice: S-CNN's and MMAction2's way] copies the release's
  fc6-1/fc7-1 instead. Convolutions not in the file would start from Gaussian std 0.01, bias 0 (conv1a)
  or 1 (the others), but every one is required;
- dropout 0.5 after fc6 and fc7; ``SOFTMAX_LOSS`` averaged over the batch (`run.TrainingNet`).

The solver: ``--solver FILE`` (`solver.read_solver`) or the example's settings (base_lr 1e-4, step γ 0.1
every 5000, 20000 updates, momentum 0.9, weight decay 5e-4, a snapshot every 5000), C3D v1.0's semantics
unless ``solver_semantics="bvlc"``; every layer ``blobs_lr: 1, 2`` and ``weight_decay: 1, 0``, fc8
included. Data: C3D's VIDEO_DATA layer (`video_data`), batch 30, the test net's batch 50. Snapshots are
``<prefix>_iter_<N>.caffemodel`` in the C3D v1.0 schema (the tool itself writes them without the
extension; `alstm extract --c3d` and the C3D v1.0 tools read them), the prefix defaulting to
``c3d_finetune`` when no solver file names one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from caffe_models import C3D, load_mean
from caffe_models.c3d import C3D_CHANNELS, C3D_LAYERS
from caffe_models.caffemodel import copy_trained_layers, file_sha256, parse_net
from caffe_models.errors import CaffeModelError
from reproduce.errors import ReproduceError, python_warning
from reproduce.finetuning.clips import CLIP_LENGTH, Samples, dataset_samples, list_samples
from reproduce.finetuning.run import FinetuneResult, Job, run_job, settings_identity
from reproduce.finetuning.solver import SolverSettings, read_solver
from reproduce.finetuning.video_data import VideoDataLayer
from reproduce.runtime.distributed import Distributed

CONV_LAYERS = tuple(name for name, _ in C3D_LAYERS if name.startswith("conv"))
KEPT_FC = {"fc6-1": "fc6", "fc7-1": "fc7"}       # the release's names of the layers keep_fc copies
DEFAULT_PREFIX = "c3d_finetune"


def c3d_fillers(net: nn.Module, generator: torch.Generator) -> None:
    """The example's fillers: convolutions Gaussian std 0.01, bias 0 (conv1a) or 1; fc6/fc7 std 0.005,
    bias 1; fc8 std 0.01, bias 0."""
    with torch.no_grad():
        for name, (weight, bias) in net.caffe_parameters().items():
            if name in CONV_LAYERS:
                std, value = 0.01, 0.0 if name == "conv1a" else 1.0
            elif name == "fc8":
                std, value = 0.01, 0.0
            else:
                std, value = 0.005, 1.0
            weight.normal_(0.0, std, generator=generator)
            bias.fill_(value)


def read_weights(path: str):
    """The parsed `.caffemodel` (either schema; C3D v1.0's when the file does not tell)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CaffeModelError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_net(bytearray(data), default_schema="c3d", source=path)


def first_blob_shape(caffe, names) -> tuple[int, ...] | None:
    """The weight shape of the file's first layer named in ``names`` (legacy leading 1s dropped)."""
    for layer in caffe.layers:
        if layer.name in names and layer.blobs:
            shape = tuple(layer.blobs[0].shape)
            while len(shape) > 2 and shape[0] == 1:
                shape = shape[1:]
            return shape
    return None


def finetune_network(weights: str, num_classes: int, *, keep_fc: bool = False, fc_dim: int = 4096,
                     seed: int = 0) -> C3D:
    """The fine-tuning network (see the module): C3D with ``num_classes`` fc8 outputs, the fillers drawn
    from ``seed``, then the pre-trained layers copied from ``weights``. Convolution widths come from the
    file; fc6/fc7 are ``fc_dim`` wide (the file's with ``keep_fc``)."""
    caffe = read_weights(weights)
    widths = [(first_blob_shape(caffe, {name}) or (default,))[0]
              for name, default in zip(CONV_LAYERS, C3D_CHANNELS, strict=True)]
    if keep_fc:
        shape = first_blob_shape(caffe, {"fc6-1", "fc6"})
        if shape is None:
            raise ReproduceError(f"--keep-fc: {weights} has no fc6-1 (or fc6) layer to keep")
        fc_dim = shape[0]
    generator = torch.Generator().manual_seed(seed)
    net = C3D(num_classes, conv_channels=widths, fc_dim=fc_dim, generator=generator)
    c3d_fillers(net, generator)
    wanted = CONV_LAYERS + (("fc6", "fc7") if keep_fc else ())
    copy_pretrained(net, caffe, wanted, KEPT_FC if keep_fc else {}, source=weights)
    return net


def copy_pretrained(net: nn.Module, caffe, wanted, aliases, *, source: str) -> None:
    """Caffe's ``CopyTrainedLayersFrom`` for the layers ``wanted`` (all required; ``aliases``: {file name:
    layer}); the file's other layers are ignored. One CaffeModelError line on any mismatch."""
    params = net.caffe_parameters()
    expected = {name: tuple(tuple(p.shape) for p in params[name]) for name in wanted}
    found, _ = copy_trained_layers(expected, caffe, wanted, aliases, source=source,
                                   target=f"{type(net).__name__} as fine-tuned")
    with torch.no_grad():
        for name, blobs in found.items():
            for param, blob in zip(params[name], blobs, strict=True):
                param.copy_(torch.from_numpy(blob.reshape(param.shape)))


def solver_settings(solver: str | SolverSettings | None, semantics: str | None, default: SolverSettings,
                    prefix: str) -> SolverSettings:
    """``solver`` (a solver.prototxt or settings) or ``default``, in ``semantics``; ``prefix`` where they name
    no snapshot prefix of their own (the C3D example's is never taken implicitly)."""
    if isinstance(solver, SolverSettings):
        unnamed = solver.snapshot_prefix == SolverSettings.snapshot_prefix      # the dataclass's default
        settings = dataclasses.replace(solver, snapshot_prefix=prefix) if unnamed else solver
    elif solver:
        settings = read_solver(solver, semantics=semantics or default.semantics)
    else:
        settings = dataclasses.replace(default, snapshot_prefix=prefix)
    if semantics and settings.semantics != semantics:
        settings = dataclasses.replace(settings, semantics=semantics)
    if not settings.snapshot_prefix:
        settings = dataclasses.replace(settings, snapshot_prefix=prefix)
    return settings


def read_samples(data, videos, annotations, list_file, valid_list, num_classes, length) -> Samples:
    """The samples of ``--data/--videos`` or of ``--list`` (exactly one of them)."""
    if (data is None) == (list_file is None) or (data is not None and videos is None):
        raise ReproduceError("give --data DATASET.h5 with --videos DIR, or --list TRAIN.lst")
    if list_file is not None:
        return list_samples(list_file, num_classes=num_classes, valid=valid_list, length=length)
    return dataset_samples(data, videos, annotations=annotations, length=length)


def finetune_c3d(out: str, *, weights: str, mean: str, data: str | None = None, videos: str | None = None,
                 annotations: str | None = None, list_file: str | None = None, valid_list: str | None = None,
                 num_classes: int | None = None, solver: str | SolverSettings | None = None,
                 solver_semantics: str | None = None, batch_size: int = 30, valid_batch_size: int = 50,
                 valid_clips: int = 1, keep_fc: bool = False, fc_dim: int = 4096, seed: int | None = None,
                 resume: bool = False, device: str | None = None, precision: str = "float32",
                 workers: int = 2, read_ahead: int = 2, checkpoint_every: int = 500,
                 dist: Distributed | None = None, progress: bool = False,
                 callback: Callable[[int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune C3D from ``weights`` into the folder ``out`` (see the module); ``alstm finetune c3d``.

    Samples: ``data`` (a built dataset) with ``videos`` (its videos) and, for ActivityNet,
    ``annotations``; or ``list_file`` (a C3D list, ``num_classes`` fc8 outputs, ``valid_list`` its test
    list). ``mean``: the volume mean (.binaryproto, 3×16×128×171; `volume_mean`). ``solver``: a
    solver.prototxt (or `SolverSettings`), default the C3D example's; ``solver_semantics`` "c3d" or "bvlc".
    ``batch_size`` clips per update (split over torchrun's processes), ``valid_batch_size`` per test
    batch, ``valid_clips`` validation clips per sample. ``seed`` (default: the solver's random_seed, else
    0) draws the fillers, the clips and the dropout masks. Running: ``resume`` a killed run, ``device``,
    ``precision`` (float32, bfloat16 autocast, `reproduce.runtime.precision`), ``workers`` decoding
    processes with ``read_ahead`` batches each, the resume state every ``checkpoint_every`` updates,
    ``dist`` a torchrun process (`reproduce.runtime.distributed.setup`), ``callback(k)`` after update k;
    ``warn`` hears what the solver file sets that is ignored (default: `warnings.warn`).
    """
    settings = solver_settings(solver, solver_semantics, SolverSettings(), DEFAULT_PREFIX)
    for text in settings.warnings:
        (warn or python_warning)(f"{solver}: {text}")
    seed = seed if seed is not None else max(settings.random_seed, 0)
    samples = read_samples(data, videos, annotations, list_file, valid_list, num_classes, CLIP_LENGTH)
    net = finetune_network(weights, samples.num_classes, keep_fc=keep_fc, fc_dim=fc_dim, seed=seed)
    layer = VideoDataLayer(load_mean(mean))
    identity = {"network": "c3d", "weights": file_sha256(weights), "mean": file_sha256(mean),
                "samples": os.path.abspath(samples.source), "train": len(samples.train),
                "valid": len(samples.valid),
                "classes": list(samples.class_names), "solver": settings_identity(settings),
                "batch_size": batch_size, "seed": seed, "keep_fc": keep_fc, "fc_dim": net.fc6.out_features,
                "valid_clips": valid_clips}
    job = Job(net, samples, layer, settings, {}, "c3d-v1", batch_size, valid_batch_size, valid_clips, seed,
              identity)
    return run_job(job, os.fspath(out), resume=resume, device=device, precision=precision, workers=workers,
                   read_ahead=read_ahead, checkpoint_every=checkpoint_every, dist=dist, progress=progress,
                   callback=callback)
