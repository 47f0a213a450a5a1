"""Training (``alstm train``): the run's configuration, its data, the optimiser, the loop, resuming."""
