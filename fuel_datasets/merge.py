"""Several feature files into one: how the per-process files of a sharded `alstm extract` become one.

Every video keeps its split, targets, frame index and source attributes; the output is written with
`FeatureWriter`, so it is committed video by video and a merge that is interrupted can be run again
(videos already in the output are skipped).
"""

from __future__ import annotations

from alstm_core.progress import progress_bar
from alstm_core.storage import TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.opening import open_dataset
from fuel_datasets.writer import FeatureWriter


def merge_feature_files(inputs: list[str], out: str, order: list[str] | None = None,
                        progress: bool = False) -> int:
    """Append every video of the ``inputs`` feature files to ``out`` (created if needed) in ``order``
    (video ids; default: file by file), with their splits, targets and source attributes. Videos
    already in ``out`` are skipped, so an interrupted merge can be rerun. Returns the videos added."""
    datasets = [open_dataset(path) for path in inputs]
    try:
        where: dict[str, tuple[object, str]] = {}
        for ds in datasets:
            for split, members in ds.splits.items():
                for vid in members:
                    where[vid] = (ds, split)
        ids = [vid for vid in (order if order is not None else where) if vid in where]
        for ds, path in zip(datasets[1:], inputs[1:], strict=True):
            if (ds.class_names, ds.multilabel) != (datasets[0].class_names, datasets[0].multilabel):
                raise DatasetError(f"{path} and {inputs[0]} have different classes; they cannot be merged")
        # sources and their attributes come from a file that has videos (a shard may have none)
        first = next((ds for ds in datasets if any(ds.splits.values())), datasets[0])
        added = 0
        with FeatureWriter(out, class_names=list(first.class_names), multilabel=first.multilabel,
                           attrs=dict(first.attrs)) as writer:
            sources = [s for s in first.sources if s != TARGETS]
            for source in sources:
                writer.set_source_info(source, **first.source_info(source))
            for vid in progress_bar(ids, desc="merge", unit="video", enabled=progress):
                if writer.has_video(vid):
                    continue
                ds, split = where[vid]
                writer.add_video(
                    vid,
                    features={s: ds.read(s, vid) for s in sources},
                    frame_index={s: ds.frame_index(s, vid) for s in sources},
                    num_frames=ds.num_frames(vid),
                    fps=ds.fps(vid),
                    targets=ds.read(TARGETS, vid) if TARGETS in ds.sources else None,
                    split=split,
                )
                added += 1
        return added
    finally:
        for ds in datasets:
            ds.close()
