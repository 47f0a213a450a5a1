"""The tables layer: the paper's numbers in reproduce/tables.py against SPEC.md §6 (parsed here), the rows'
sources against the built-in benchmark, `markdown`'s columns, and `findings`, which must report every
claim (a missing row as missing, never dropped)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reproduce.experiments import claims, findings, markdown
from reproduce.tables import MODELS, TABLES

# SPEC.md §6, verbatim; the test below checks that it still is when the shared SPEC.md is beside the repo.
SPEC_SECTION_6 = """\
Table 1: C3D (fc8) 40.9/40.0 · LSTM-C3D (fc6) 40.3/40.6 · aLSTM-C3D (fc8) 42.7/42.5 ·
aLSTM-VGG_obj fc6 45.7/46.2, fc8 47.4/48.0 · aLSTM-VGG_sce fc6 44.0/43.9, fc8 45.3/44.9 ·
aLSTM-VGG_act fc6 47.0/47.3, fc8 48.1/48.6.

Table 2 (ensembles): act+obj fc6 50.0/51.0, fc8 50.7/51.4 · act+sce fc6 50.4/50.7, fc8 50.7/51.2 ·
act+obj+sce fc6 51.4/52.4, fc8 51.5/52.8, all 52.8/54.2. Baselines quoted from the ActivityNet paper:
SVM-DF (fc8) –/38.1 · SVM MF+DF –/49.5 · MF+SF –/48.9 · MF+DF+SF –/50.5.

Table 3 (vanilla vs attention, fc6): LSTM-VGG_obj 42.2/47.6 vs aLSTM 45.6/51.2 · LSTM-VGG_sce
39.0/44.4 vs 44.0/49.5 · LSTM-VGG_act 45.9/51.1 vs 47.0/52.4.

Hollywood2 mAP, Table 4: C3D (fc8) 41.4 · LSTM-C3D (fc6) 39.9 · aLSTM-C3D (fc8) 44.4 ·
aLSTM-VGG_obj fc6 43.6, fc8 46.3, fc8 variant (b) 44.1 · aLSTM-VGG_sce fc6 43.6, fc8 41.6 ·
aLSTM-VGG_act fc6 44.8, fc8 45.3. Table 5: act+obj fc6 46.2, fc8 48.5, all 48.7 · act+sce fc6 46.1,
fc8 45.2 · act+obj+sce fc6 46.6, fc8 47.9, all 48.1; quoted: soft attention (Sharma et al.) 43.9,
DL-SFA 48.1, Multi-skip features 68, VideoDarwin 73.7.
"""

SPEC = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"
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
    """SPEC's shorthand → the row names of reproduce/tables.py (the renaming rules, one per table kind)."""
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


def _spec_tables(text: str) -> dict[int, dict[str, list[float | None]]]:
    bodies = re.split(r"(?:Hollywood2 mAP, )?Table (\d)(?: \([^)]*\))?: ", " ".join(text.split()))
    return {int(number): _names(int(number), _entries(body.strip()))
            for number, body in zip(bodies[1::2], bodies[2::2], strict=True)}


def test_the_embedded_section_is_spec_md_section_6():
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not beside this checkout (a clean clone, CI): the embedded copy of §6, "
                    "which test_paper_numbers_equal_spec checks the tables against, cannot be compared "
                    "with it here")
    section = SPEC.read_text(encoding="utf-8").split("## 6.")[1].split("\n## ")[0]
    assert " ".join(section.split("\n", 1)[1].split()) == " ".join(SPEC_SECTION_6.split())


@pytest.mark.parametrize("number", sorted(TABLES))
def test_paper_numbers_equal_spec(number):
    spec = _spec_tables(SPEC_SECTION_6)[number]
    metrics = TABLES[number]["metrics"]
    ours = {row.name: [row.paper.get(m) for m in metrics] for row in TABLES[number]["rows"]}
    if number == 2:     # Table 2 repeats Table 1's C3D (fc8) row as its CNN baseline
        assert ours.pop("CNN-C3D (fc8)") == _spec_tables(SPEC_SECTION_6)[1]["C3D (fc8)"]
    assert ours == spec


def test_every_row_names_sources_the_builtin_benchmark_holds(tmp_path):
    from fuel_datasets import open_dataset
    from fuel_datasets.synthetic import SynthConfig, write_synthetic
    from reproduce.experiments import synth_configs
    from reproduce.tables import RunSettings

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


def _result(number: int, measured: dict[str, dict[str, float | None]], **rows_extra) -> dict:
    rows = []
    for row in TABLES[number]["rows"]:
        entry = {"name": row.name, "kind": row.kind, "models": list(row.models), "paper": row.paper,
                 "measured": measured.get(row.name, {m: None for m in TABLES[number]["metrics"]})}
        entry.update(rows_extra.get(row.name, {}))
        rows.append(entry)
    return {"table": number, "title": TABLES[number]["title"], "metrics": list(TABLES[number]["metrics"]),
            "rows": rows, "builtin_benchmark": False}


def test_markdown_puts_paper_beside_measured_in_the_right_columns():
    measured = {row.name: {"accuracy": 10.0 + k, "mAP": 60.0 + k} for k, row in enumerate(TABLES[1]["rows"])}
    text = markdown(_result(1, measured))
    lines = text.splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == ["Model", "AC paper", "AC measured", "mAP paper", "mAP measured"]
    body = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:4 + len(measured)])}
    for k, row in enumerate(TABLES[1]["rows"]):
        assert body[row.name] == [f"{row.paper['accuracy']:.1f}", f"{10.0 + k:.1f}",
                                  f"{row.paper['mAP']:.1f}", f"{60.0 + k:.1f}"]


def test_findings_report_every_claim_and_a_missing_row_as_missing():
    results = []
    for number in sorted(TABLES):
        names = [row.name for row in TABLES[number]["rows"]]
        measured = {name: {"accuracy": 50.0, "mAP": 50.0 + (5.0 if name.startswith("aLSTM") else 0.0)}
                    for name in names}
        members = {row.name: {"members": [{"accuracy": 1.0, "mAP": 40.0}, {"accuracy": 1.0, "mAP": 45.0}]}
                   for row in TABLES[number]["rows"] if row.kind == "ensemble"}
        results.append(_result(number, measured, **members))
    lines = findings(results)
    total = sum(len(claims(number)) for number in TABLES)
    assert total == 33 and len(lines) == total
    assert "[ok] Table 1: aLSTM-VGG_obj (fc8) beats LSTM-C3D (fc6): 55.0 vs 50.0 mAP" in lines
    assert "[ok] Table 2: ensemble aLSTM-VGG_act+obj (fc6) beats its best member: 55.0 vs 45.0 mAP" in lines
    assert "[NOT MET] Table 4: variant (a) beats variant (b): 55.0 vs 55.0 mAP" in lines
    # drop one row from Table 3 and leave one row of Table 1 unmeasured: both still get a line
    results[2]["rows"] = [r for r in results[2]["rows"] if r["name"] != "LSTM-VGG_sce (fc6)"]
    results[0]["rows"][4]["measured"] = {"accuracy": None, "mAP": None}
    lines = findings(results)
    assert len(lines) == total
    assert ("[MISSING] Table 3: aLSTM-VGG_sce (fc6) beats its vanilla LSTM: Table 3 has no row "
            "'LSTM-VGG_sce (fc6)'") in lines
    assert "[NOT RUN] Table 1: aLSTM-VGG_obj (fc8) beats LSTM-C3D (fc6): no measured mAP" in lines
