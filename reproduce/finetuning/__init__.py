"""Fine-tuning C3D and VGG-19 from public Caffe weights with Caffe's own semantics.

`solver` holds Caffe's SGD solver: the solver.prototxt settings (`SolverSettings`, `read_solver`), the
learning-rate policies (`learning_rate`) and the update (`CaffeSGD`, `caffe_param_groups`), for both the
C3D v1.0 tools (`semantics="c3d"`) and BVLC Caffe (`"bvlc"`); docs/formats.md §6 has the facts. The
snapshots are written by `caffe_models.writer` in the formats the original tools read.
"""
