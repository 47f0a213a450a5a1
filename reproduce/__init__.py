"""Training, evaluation, highlighting and the `alstm` command: the layer that wires the others."""
