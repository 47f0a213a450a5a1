"""A Caffe SolverParameter in protobuf text format (a solver.prototxt), read field by field.

Lexing is protobuf's own `text_format.Tokenizer` (comments, single or double quotes, escapes, adjacent
strings, numbers, ``[a, b]`` lists); this module knows SolverParameter's fields, so that an unknown
field, a value of the wrong type or a non-repeated field given twice is a one-line `ReproduceError`
naming the file and the line. `solver.read_solver` turns the result into `SolverSettings`.
"""

from __future__ import annotations

import difflib

from google.protobuf import text_format

from reproduce.errors import ReproduceError

# SolverParameter's fields (BVLC `src/caffe/proto/caffe.proto`; C3D v1.0's are a subset): {name: (kind,
# repeated)}. Kinds: float, int, string, bool, enum (names in _ENUMS), message (skipped whole).
_FIELDS = {name: (kind, repeated) for kind, repeated, names in (
    ("float", False, "base_lr gamma power momentum weight_decay clip_gradients delta momentum2 rms_decay"),
    ("int", False, "stepsize max_iter iter_size snapshot display test_interval random_seed average_loss "
                   "device_id"),
    ("int", True, "stepvalue test_iter"),
    ("string", False, "lr_policy snapshot_prefix net train_net type regularization_type"),
    ("string", True, "test_net weights"),
    ("bool", False, "test_compute_loss test_initialization snapshot_diff debug_info snapshot_after_train "
                    "layer_wise_reduce"),
    ("enum", False, "solver_mode snapshot_format solver_type"),
    ("message", False, "net_param train_net_param train_state"),
    ("message", True, "test_net_param test_state"),
) for name in names.split()}
_ENUMS = {"solver_mode": ("CPU", "GPU"), "snapshot_format": ("HDF5", "BINARYPROTO"),
          "solver_type": ("SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA", "ADAM")}
_KIND_NAMES = {"float": "a number", "int": "an integer", "string": "a quoted string", "bool": "true or false"}


def parse_solver_prototxt(text: str, source: str) -> dict[str, list[tuple[object, int]]]:
    """{field: [(value, line)]} of a SolverParameter in protobuf text format; messages give None.

    Lexing (comments, quotes, escapes, numbers) is protobuf's own `text_format.Tokenizer`.
    """
    tok = text_format.Tokenizer(text.splitlines())
    found: dict[str, list[tuple[object, int]]] = {}

    def fail(message: str, line: int | None = None):
        raise ReproduceError(f"{source}, line {line or tok.ParseError('').GetLine()}: {message}")

    def skip_message(name: str) -> None:
        opening, depth = tok.token, 0
        if opening not in ("{", "<"):
            fail(f"{name} takes a message in braces, got {opening!r}")
        while True:
            if tok.AtEnd():
                fail(f"{name}: its {opening} is never closed")
            depth += {"{": 1, "<": 1, "}": -1, ">": -1}.get(tok.token, 0)
            tok.NextToken()
            if depth == 0:
                return

    def value(name: str, kind: str):
        token = tok.token
        try:
            if kind == "enum":
                word = tok.ConsumeIdentifierOrNumber()
                names = _ENUMS[name]
                if word.isdigit() and int(word) < len(names):
                    word = names[int(word)]
                if word in names:
                    return word
            else:
                return {"float": tok.ConsumeFloat, "int": tok.ConsumeInteger, "string": tok.ConsumeString,
                        "bool": tok.ConsumeBool}[kind]()
        except text_format.ParseError:
            pass
        wanted = _KIND_NAMES.get(kind) or "one of " + ", ".join(_ENUMS[name])
        fail(f"{name} takes {wanted}, got {token or 'nothing'}")

    try:
        while not tok.AtEnd():
            line = tok.ParseError("").GetLine()
            token = tok.token
            try:
                name = tok.ConsumeIdentifier()
            except text_format.ParseError:
                fail(f"expected a field name, got {token!r}")
            if name not in _FIELDS:
                close = difflib.get_close_matches(name, _FIELDS, n=1)
                fail(f"unknown solver field {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            kind, repeated = _FIELDS[name]
            if name in found and not repeated:
                fail(f"{name} is given twice (it takes one value)")
            if not tok.TryConsume(":") and kind != "message":
                fail(f"expected ':' after {name}")
            values = found.setdefault(name, [])
            if repeated and tok.TryConsume("["):
                while not tok.TryConsume("]"):
                    values.append((skip_message(name) if kind == "message" else value(name, kind), line))
                    if not tok.TryConsume(",") and tok.token != "]":
                        fail(f"{name}: expected ',' or ']' in its list")
            else:
                values.append((skip_message(name) if kind == "message" else value(name, kind), line))
            tok.TryConsume(",") or tok.TryConsume(";")
    except text_format.ParseError as error:  # the tokenizer's own complaints (a bad quote...)
        fail(str(error).split(" : ", 1)[-1], error.GetLine())
    return found
