"""The packages' shape, read from the source with ``ast``: who may import whom, no import cycles,
environment variables read only at the command-line edge, thin commands, and the storage convention
stated once.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): a
deferred import is still a dependency. A script's import of a sibling script (``from figure2 import``)
is an edge too. Dynamic imports (``importlib``, ``__import__``) are allowed only where a name table
drives them (the command line, the package's lazy API), and there every module named in a string
counts as imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("alstm_core", "bricks", "caffe_models", "fuel_datasets", "reproduce")
SCRIPTS = ("experiments", "benchmarks")
# package → the packages it may import (besides itself)
ALLOWED = {
    "alstm_core": set(),
    "bricks": set(),
    "caffe_models": {"alstm_core"},
    "fuel_datasets": {"alstm_core"},
    "reproduce": {"alstm_core", "bricks", "caffe_models", "fuel_datasets"},
    "experiments": set(PACKAGES),
    "benchmarks": set(PACKAGES),
}
COMMAND_LINES = 150
DYNAMIC_IMPORTS = ("reproduce/cli.py", "reproduce/__init__.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports: ``a.b`` for ``import a.b``, and for ``from a import b`` both
    ``a`` and ``a.b`` (b may be a submodule); a script's sibling ``x`` as ``<folder>.x``; in the files of
    DYNAMIC_IMPORTS, every string naming a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    if path.parts[-2] in SCRIPTS:
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found.update(f"{path.parts[-2]}.{n}" for n in names if n in siblings)
    if str(path.relative_to(ROOT)) in DYNAMIC_IMPORTS:
        found.update(node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def sources(folders) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """module → the project modules it imports (package ``__init__`` included)."""
    files = {module_name(p): p for p in sources(PACKAGES + SCRIPTS)}
    return {name: {m for m in imported(path) if m in files and m != name} for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_upward_or_sideways_imports(package):
    wrong = []
    for name, deps in graph().items():
        if name.split(".")[0] != package:
            continue
        for dep in deps:
            top = dep.split(".")[0]
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, wrong


def in_command_line(module: str) -> bool:
    """Whether ``module`` is the command line: reproduce.cli, reproduce.__main__ or a command."""
    return module in ("reproduce.cli", "reproduce.__main__", "reproduce.commands") \
        or module.startswith("reproduce.commands.")


def test_only_the_command_line_imports_the_commands():
    wrong = [f"{name} imports {dep}" for name, deps in graph().items() for dep in deps
             if in_command_line(dep) and dep != "reproduce.__main__" and not in_command_line(name)]
    assert not wrong, wrong


def test_no_command_imports_another():
    wrong = [f"{name} imports {dep}" for name, deps in graph().items()
             if name.startswith("reproduce.commands.") for dep in deps
             if dep.startswith("reproduce.commands.") and dep != "reproduce.commands.common"]
    assert not wrong, wrong


def test_commands_are_short():
    long = {p.name: n for p in (ROOT / "reproduce" / "commands").glob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > COMMAND_LINES}
    assert not long, f"commands over {COMMAND_LINES} lines: {long}"


ENVIRONMENT = ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that touch the environment: ``os.environ``/``getenv``/… (``os`` under any alias), or those
    names imported from ``os``."""
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names if a.name == "os"}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" \
                and any(a.name in ENVIRONMENT for a in node.names):
            lines.append(node.lineno)
    return lines


def test_the_environment_check_sees_every_spelling():
    for text in ("import os\nos.environ['A']", "import os as o\no.getenv('A')", "from os import environ",
                 "import os\nos.putenv('A', 'b')"):
        assert environment_reads(ast.parse(text)), text
    assert environment_reads(ast.parse("import os\nos.path.join('a')")) == []


def test_environment_read_only_in_cli():
    wrong = [f"{path.relative_to(ROOT)}:{line}" for path in sources(PACKAGES + SCRIPTS)
             if path != ROOT / "reproduce" / "cli.py"
             for line in environment_reads(ast.parse(path.read_text(encoding="utf-8")))]
    assert not wrong, wrong


def test_dynamic_imports_only_where_a_name_table_drives_them():
    wrong = []
    for path in sources(PACKAGES + SCRIPTS):
        if str(path.relative_to(ROOT)) in DYNAMIC_IMPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = node.func if isinstance(node, ast.Call) else None
            if (isinstance(called, ast.Name) and called.id == "__import__") or (
                    isinstance(called, ast.Attribute) and called.attr == "import_module"):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def restatements(tree: ast.AST) -> list[tuple[int, str]]:
    """Where code spells the storage convention itself: the flip suffix or a flipped source's name, the
    labels' source name, or the list of splits or of layers (docstrings aside)."""
    from alstm_core.storage import FLIP_SUFFIX, LAYERS, SPLITS, TARGETS, parse_source

    docs, found = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            parsed = parse_source(node.value)
            if node.value in (FLIP_SUFFIX, TARGETS) or (parsed is not None and parsed.flip):
                found.append((node.lineno, node.value))
        elif isinstance(node, (ast.Tuple, ast.List)):
            values = tuple(e.value for e in node.elts if isinstance(e, ast.Constant))
            if values in (SPLITS, LAYERS):
                found.append((node.lineno, str(values)))
    return found


def test_the_restatement_finder_finds_them():
    text = 'x = "c3d_fc6_flip"\ny = ["train", "valid", "test"]\nz = d["targets"]\nw = ("fc6", "fc7", "fc8")'
    assert sorted(line for line, _ in restatements(ast.parse(text))) == [1, 2, 3, 4]
    assert restatements(ast.parse('"""targets"""\nx = "c3d_fc6"')) == []


def test_the_storage_convention_is_stated_once():
    wrong = [f"{path.relative_to(ROOT)}:{line} {what}" for path in sources(PACKAGES + ("experiments",))
             if path != ROOT / "alstm_core" / "storage.py"
             for line, what in restatements(ast.parse(path.read_text(encoding="utf-8")))]
    assert not wrong, wrong


def test_every_user_error_derives_from_one_base():
    from alstm_core import UserError
    from caffe_models.errors import CaffeModelError, VideoError
    from fuel_datasets.errors import DatasetError
    from reproduce.errors import ReproduceError

    for error in (CaffeModelError, VideoError, DatasetError, ReproduceError):
        assert issubclass(error, UserError)
