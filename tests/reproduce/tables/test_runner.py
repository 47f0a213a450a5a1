"""The tables runner: `markdown`'s columns, and `findings`, which must report every claim (a missing row
as missing, never dropped)."""

from __future__ import annotations

from reproduce.tables.rows import TABLES
from reproduce.tables.runner import claims, findings, markdown


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
