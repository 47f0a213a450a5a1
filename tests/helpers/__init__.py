"""What several test modules share: builders of small inputs (videos, Caffe files, feature files,
configurations), reference computations and probes. Test modules import from here (``from
helpers.videos import ...``; pytest puts ``tests/`` on the path, see pyproject.toml), never from each
other; fixtures built on these live in ``tests/conftest.py``.

- `helpers.videos`: small videos encoded with PyAV, with the frames that went in;
- `helpers.caffe_files`: .caffemodel / .binaryproto files written by the protobuf package;
- `helpers.caffe_reference`: direct numpy computations of Caffe's layers;
- `helpers.networks`: reduced-width C3D and VGG-19, and the extraction engine's in-memory writer;
- `helpers.feature_files`: feature files of known rows for the layout and writer tests;
- `helpers.builders`: tiny generated datasets, training configurations and flags, toy files, probes;
- `helpers.activitynet`: the ActivityNet annotation JSON and C3D release in their published layouts;
- `helpers.distributed`: torchrun on loopback, and the settings its tests share;
- `helpers.browser`: headless Chromium for the report;
- `helpers.mutations`: a script (not collected) that breaks the code on purpose and reports which
  fast tests catch each change.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]      # the repository
TESTS = ROOT / "tests"
