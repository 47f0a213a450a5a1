"""alstm_core.atomic: a failed write keeps the previous file and leaves no temporary file behind."""

import json
import os

import pytest

from alstm_core.atomic import write_atomically, write_bytes, write_json, write_text


def test_writes_land_whole_in_a_new_folder(tmp_path):
    path = tmp_path / "new" / "result.json"
    assert write_json(path, {"b": 1, "a": [1.5, None]}, sort_keys=True) == str(path)
    assert path.read_text() == json.dumps({"a": [1.5, None], "b": 1}, indent=2) + "\n"
    write_text(tmp_path / "t.md", "é\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "é\n"
    write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"


def test_a_failing_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"version": 1})

    def half_then_fail(f):
        f.write('{"version": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="the disk is full") as caught:
        write_atomically(path, half_then_fail)
    assert caught.value.errno == 28 and caught.value.filename == str(path)
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["result.json"]                          # no temporary file left
    with pytest.raises(TypeError):
        write_json(path, {"not json": object()})
    assert json.loads(path.read_text()) == {"version": 1} and os.listdir(tmp_path) == ["result.json"]
