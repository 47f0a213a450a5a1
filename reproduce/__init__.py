"""Training, evaluation, highlighting and the `alstm` command: the layer that wires the others.

The Python API: one function per command, each returning typed results.

=====================  ===============================  ============================================
command                function                         returns
=====================  ===============================  ============================================
``alstm extract``      `extract_features`               `reproduce.extraction.Extraction`
``alstm dataset …``    ``fuel_datasets.build_activitynet`` / ``build_hollywood2`` / ``describe`` /
                       ``convert_legacy`` / ``repair``
``alstm train``        ``reproduce.train.train``        `reproduce.train.TrainResult`
``alstm evaluate``     `evaluate_checkpoints`,          `reproduce.evaluate.Evaluation`
                       `evaluate_baseline`
``alstm highlight``    `highlight_video`                `reproduce.highlighting.VideoHighlights`
``alstm synth``        ``fuel_datasets.synthetic.write_synthetic``
=====================  ===============================  ============================================

The names are imported on first use, so that ``import reproduce`` (and `alstm --help`) stays light.
``train`` is imported from ``reproduce.train`` (a function of the package's name would be shadowed by
its module).
"""

from __future__ import annotations

import importlib

_HOMES = {
    "extract_features": "reproduce.extraction",
    "Extraction": "reproduce.extraction",
    "TrainConfig": "reproduce.config",
    "TrainResult": "reproduce.train",
    "evaluate_checkpoints": "reproduce.evaluate",
    "evaluate_baseline": "reproduce.evaluate",
    "Evaluation": "reproduce.evaluate",
    "highlight_video": "reproduce.highlighting",
    "VideoHighlights": "reproduce.highlighting",
    "Highlights": "reproduce.highlights",
    "Settings": "reproduce.highlights",
    "load_model": "reproduce.checkpoint",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
