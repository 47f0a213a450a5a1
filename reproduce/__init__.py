"""Training, evaluation, highlighting and the `alstm` command: the layer that wires the others."""


def load_model(path, device="cpu"):
    """(model in eval mode, meta) from a checkpoint written by `alstm train` (see reproduce.checkpoint).

    Imported lazily so that `alstm --help` does not load torch.
    """
    from reproduce.checkpoint import load_model as _load_model

    return _load_model(path, device=device)
