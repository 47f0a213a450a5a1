"""bricks: the attention-LSTM of Torabi & Sigal as PyTorch modules (docs/paper.md §2, §9).

``AttentionLSTM`` (variants a and b, vanilla with ``attention=False``, the original framework's
semantics with ``blocks_compat=True``), its parts ``SequenceContentAttention`` and ``LSTMCell``,
and ``Ensemble``. Public tensors are batch-first; bricks raise ``ValueError`` on bad input.
"""

from .alstm import AttentionLSTM, AttentionLSTMOutput
from .attention import SequenceContentAttention, compute_weighted_averages, masked_softmax
from .ensemble import Ensemble, EnsembleOutput, MemberInputs
from .lstm import LSTMCell, StepDropout, bernoulli_keep_mask

__all__ = [
    "AttentionLSTM",
    "AttentionLSTMOutput",
    "Ensemble",
    "EnsembleOutput",
    "LSTMCell",
    "MemberInputs",
    "SequenceContentAttention",
    "StepDropout",
    "bernoulli_keep_mask",
    "compute_weighted_averages",
    "masked_softmax",
]
