"""The files of a run folder: checkpoints (``last.pt``, ``best.pt``) and the run's log."""
