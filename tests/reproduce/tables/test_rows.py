"""The paper's numbers in reproduce/tables/rows.py against docs/paper.md §6 (parsed here), and the rows'
sources against the built-in benchmark (the runner's markdown and findings: test_runner.py)."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT

from reproduce.tables.rows import MODELS, TABLES

PAPER = ROOT / "docs" / "paper.md"


def section_6() -> str:
    """The text of docs/paper.md's section "## 6." (its heading line left out)."""
    text = PAPER.read_text(encoding="utf-8")
    assert "\n## 6." in text, f"{PAPER}: no section '## 6.'"
    section = text.split("\n## 6.", 1)[1].split("\n## ", 1)[0]
    return section.split("\n", 1)[1]


_NUMBERS = re.compile(r"^(?P<label>.*?)\s*(?P<a>–|\d+(?:\.\d+)?)(?:/(?P<b>\d+(?:\.\d+)?))?$")


def _entries(text: str) -> list[tuple[str, list[float | None]]]:
    """(label, numbers) of every "label a[/b]" of a table's text, in order; continuations such as
    ", fc8 47.4/48.0" or " vs aLSTM 45.6/51.2" keep their own short label."""
    out = []
    for item in re.split(r" · |; quoted: |\. Baselines quoted from the ActivityNet paper: ", text):
        for part in re.split(r", | vs ", item.strip().rstrip(".")):
            match = _NUMBERS.match(part.strip())
            assert match, part
            values = [None if match["a"] == "–" else float(match["a"])]
            if match["b"]:
                values.append(float(match["b"]))
            out.append((match["label"], values))
    return out


def _names(number: int, entries) -> dict[str, list[float | None]]:
    """§6's shorthand → the row names of reproduce/tables/rows.py (the renaming rules, one per table kind)."""
    out, base = {}, ""
    for label, values in entries:
        family = re.match(r"(\S+) (fc6|fc8|all)$", label)
        if number in (1, 4) and (family or label in ("fc6", "fc8") or label.startswith("fc8 variant")):
            if family:
                base, label = family[1], family[2]
            label = f"{base} ({label})" if label != "fc8 variant (b)" else f"{base} (fc8)(b)"
        elif number in (2, 5) and re.match(r"(act|obj|sce)[+a-z]* (fc6|fc8|all)$|(fc6|fc8|all)$", label):
            if family:
                base, label = family[1], family[2]
            label = f"aLSTM-VGG_{base} ({label})"
        elif number in (2, 5):                               # quoted rows
            label = label[0].upper() + label[1:]
            label = (f"SVM {label}" if label.startswith("MF+") else label) + " [quoted]"
        elif number == 3:
            base = label if label not in ("aLSTM", "") else "a" + base.removeprefix("a")
            label = f"{base} (fc6)"
        out[label] = values
    return out


def _section_tables(text: str) -> dict[int, dict[str, list[float | None]]]:
    bodies = re.split(r"(?:Hollywood2 mAP, )?Table (\d)(?: \([^)]*\))?: ", " ".join(text.split()))
    return {int(number): _names(int(number), _entries(body.strip()))
            for number, body in zip(bodies[1::2], bodies[2::2], strict=True)}


def test_section_6_gives_every_table_of_rows_py():
    tables = _section_tables(section_6())
    assert sorted(tables) == sorted(TABLES)
    assert all(tables[number] for number in tables)


@pytest.mark.parametrize("number", sorted(TABLES))
def test_paper_numbers_equal_docs_paper_md(number):
    expected = _section_tables(section_6())[number]
    metrics = TABLES[number]["metrics"]
    ours = {row.name: [row.paper.get(m) for m in metrics] for row in TABLES[number]["rows"]}
    if number == 2:     # Table 2 repeats Table 1's C3D (fc8) row as its CNN baseline
        assert ours.pop("CNN-C3D (fc8)") == _section_tables(section_6())[1]["C3D (fc8)"]
    assert ours == expected


def test_every_row_names_sources_the_builtin_benchmark_holds(tmp_path):
    from fuel_datasets import open_dataset
    from fuel_datasets.synthetic import SynthConfig, write_synthetic
    from reproduce.tables.rows import RunSettings
    from reproduce.tables.runner import synth_configs

    for config in synth_configs(RunSettings.quick()):
        path = tmp_path / f"{config.multilabel}.h5"
        small = {k: v for k, v in vars(config).items() if k != "num_videos"}
        write_synthetic(str(path), SynthConfig(**small, num_videos=12))
        with open_dataset(path) as ds:
            for number, table in TABLES.items():
                for row in table["rows"]:
                    for key in row.models:
                        model = MODELS[key]
                        for source in (model.input_source, model.attended_source):
                            assert source is None or source in ds.sources, (number, row.name, source)
                            assert source is None or f"{source}_flip" in ds.sources
                    if row.baseline:
                        assert row.baseline in ds.sources and ds.dim(row.baseline) == ds.num_classes


