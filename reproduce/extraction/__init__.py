"""Feature extraction (``alstm extract``): videos → C3D and VGG-19 features in a feature file."""
