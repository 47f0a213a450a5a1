"""What a feature file holds (``alstm dataset info``): ``describe(path)`` → `DatasetInfo`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fuel_datasets.opening import open_dataset


@dataclass(frozen=True)
class SourceInfo:
    """One feature source: its dimension, total rows, frames per row (a list if videos differ) and the
    attributes stored with it (network, layer, weights, …)."""

    name: str
    dim: int
    rows: int
    frame_stride: int | list[int]
    info: dict

    def to_json(self) -> dict:
        return {"name": self.name, "dim": self.dim, "rows": self.rows, "frame_stride": self.frame_stride,
                "info": self.info}


@dataclass(frozen=True)
class DatasetInfo:
    """A feature file (our layout or a legacy Fuel file): its size, videos, classes, splits (video counts,
    "none" for videos in no split), sources and attributes. ``frames``: total frames (None for a legacy
    file); ``uncommitted_videos``: the incomplete tail an interrupted writer left."""

    path: str
    format: str
    size_bytes: int
    num_videos: int
    num_classes: int
    multilabel: bool
    class_names: list[str]
    splits: dict[str, int]
    sources: tuple[SourceInfo, ...]
    uncommitted_videos: int
    frames: int | None
    attrs: dict

    @classmethod
    def from_description(cls, d: dict) -> DatasetInfo:
        """From a dataset's ``describe()``."""
        sources = tuple(SourceInfo(s["name"], s["dim"], s["rows"], s["frame_stride"], s["info"])
                        for s in d["sources"])
        return cls(d["path"], d["format"], d["size_bytes"], d["num_videos"], d["num_classes"],
                   d["multilabel"], list(d["class_names"]), dict(d["splits"]), sources,
                   d["uncommitted_videos"], d.get("frames"), dict(d["attrs"]))

    def to_json(self) -> dict:
        """The description as JSON types (``alstm dataset info --json``)."""
        out = {"path": self.path, "format": self.format, "size_bytes": self.size_bytes,
               "num_videos": self.num_videos, "num_classes": self.num_classes, "multilabel": self.multilabel,
               "class_names": self.class_names, "splits": self.splits,
               "sources": [s.to_json() for s in self.sources], "uncommitted_videos": self.uncommitted_videos}
        if self.frames is not None:
            out["frames"] = self.frames
        return out | {"attrs": self.attrs}

    def format_text(self) -> str:
        """The description for a person: a summary, a table of the sources, the file's attributes."""
        units = (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
        unit, scale = next(((u, s) for u, s in units if self.size_bytes >= s), ("B", 1))
        kind = "multi-label" if self.multilabel else "single-label"
        classes = (f"{self.num_classes} ({kind})" if self.num_classes
                   else "none (unlabelled videos: `alstm dataset build` labels them from annotations)")
        lines = [f"{self.path}: {self.format}, {self.size_bytes / scale:.1f} {unit} on disk",
                 f"videos: {self.num_videos}   classes: {classes}",
                 "splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items())]
        if self.uncommitted_videos:
            lines.append(f"note: {self.uncommitted_videos} incomplete video(s) past the last committed one "
                         "(an interrupted writer); the next writer or `alstm dataset repair` drops them")
        rows = [["source", "dim", "rows", "frames/row", "network", "layer"]]
        for s in self.sources:
            rows.append([s.name, str(s.dim), str(s.rows), str(s.frame_stride),
                         str(s.info.get("network", s.info.get("fuel_kind", "-"))),
                         str(s.info.get("layer", "-"))])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        table.insert(1, "  ".join("-" * w for w in widths))
        lines += [""] + table
        if self.attrs:
            lines += [""] + [f"{k}: {v}" for k, v in sorted(self.attrs.items())]
        return "\n".join(lines)


def describe(path: str | os.PathLike) -> DatasetInfo:
    """The `DatasetInfo` of the feature file at ``path`` (ours or legacy Fuel)."""
    with open_dataset(path) as ds:
        return DatasetInfo.from_description(ds.describe())
