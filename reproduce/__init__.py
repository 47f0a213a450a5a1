"""Training, evaluation, extraction, highlighting, the paper's tables and the `alstm` command: the
layer that wires the others, grouped by stage (``ls reproduce/`` shows the pipeline).

The Python API: one function per command, each returning typed results.

=====================  ==========================================  ===========================================
command                function                                    returns
=====================  ==========================================  ===========================================
``alstm extract``      `extract_features`                          `Extraction`
``alstm dataset …``    ``fuel_datasets.build_activitynet`` / ``build_hollywood2`` / ``describe`` /
                       ``convert_legacy`` / ``repair``
``alstm train``        `train` (with a `TrainConfig`)              `TrainResult`
``alstm evaluate``     `evaluate_checkpoints`, `evaluate_baseline`  `Evaluation`
``alstm highlight``    `highlight_video`                           `VideoHighlights` (a `Highlights`)
``alstm finetune``     `finetune_c3d`, `finetune_vgg`, `volume_mean`  `FinetuneResult`, `VolumeMean`
``alstm synth``        ``fuel_datasets.synthetic.write_synthetic``
=====================  ==========================================  ===========================================

The names are imported on first use, so that ``import reproduce`` (and `alstm --help`) stays light.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "extract_features": "reproduce.extraction.extract",
    "Extraction": "reproduce.extraction.extract",
    "TrainConfig": "reproduce.training.config",
    "train": "reproduce.training.loop",
    "TrainResult": "reproduce.training.loop",
    "evaluate_checkpoints": "reproduce.evaluation.evaluate",
    "evaluate_baseline": "reproduce.evaluation.evaluate",
    "Evaluation": "reproduce.evaluation.evaluate",
    "highlight_video": "reproduce.highlighting.pipeline",
    "VideoHighlights": "reproduce.highlighting.pipeline",
    "Highlights": "reproduce.highlighting.results",
    "HighlightSettings": "reproduce.highlighting.results",
    "load_model": "reproduce.runs.checkpoint",
    "finetune_c3d": "reproduce.finetuning.c3d",
    "finetune_vgg": "reproduce.finetuning.vgg",
    "FinetuneResult": "reproduce.finetuning.run",
    "volume_mean": "reproduce.finetuning.mean",
    "VolumeMean": "reproduce.finetuning.mean",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
