"""The packages' shape, read from the source with ``ast``: who may import whom (packages, and the stages
of ``reproduce``), no import cycles, environment variables read only at the command-line edge, thin
commands, the storage convention stated once; no test file importing another; no reference to a
document outside the repository, and every ``docs/<name>.md`` named exists.

Every import counts, wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): a
deferred import is still a dependency. A script's import of a sibling script (``from figure2 import``)
is an edge too. Dynamic imports (``importlib``, ``__import__``) are allowed only where a name table
drives them (the command line, the package's lazy API), and there every module named in a string
counts as imported.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

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


def import_sites(path: Path) -> list[tuple[str, int]]:
    """(module name, line) of every import of ``path``: ``a.b`` for ``import a.b``, and for ``from a
    import b`` both ``a`` and ``a.b`` (b may be a submodule); a script's sibling ``x`` as ``<folder>.x``;
    in the files of DYNAMIC_IMPORTS, every string naming a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[tuple[str, int]] = []
    if path.parts[-2] in SCRIPTS:
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [(f"{path.parts[-2]}.{n}", node.lineno) for n in names if n in siblings]
    if str(path.relative_to(ROOT)) in DYNAMIC_IMPORTS:
        found += [(node.value, node.lineno) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.append((module, node.lineno))
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def imported(path: Path) -> set[str]:
    """Every module name ``path`` imports (`import_sites` without the lines)."""
    return {module for module, _ in import_sites(path)}


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


# ---------------------------------------------------------------------------------------------------
# The stages of reproduce
# ---------------------------------------------------------------------------------------------------

ANY = "any stage"
# reproduce/<stage>/ → the other stages its modules may import; besides those, a stage imports only its
# own modules and reproduce.errors (never reproduce.cli, nor the package's lazy API). Every folder of
# reproduce/ must be listed: a new stage says where it stands when it is added.
STAGES = {
    "runtime": set(),
    "runs": {"runtime"},
    "extraction": {"runtime"},
    "evaluation": {"runtime", "runs"},
    "training": {"runtime", "runs", "evaluation"},
    "highlighting": {"runtime", "runs", "extraction"},
    "tables": {"runtime", "runs", "training", "evaluation"},
    "finetuning": {"runtime", "extraction"},
    "commands": ANY,                    # the command line, like reproduce/cli.py, may import anything
}
STAGE_SHARED = {"reproduce.errors"}


def stage_folders() -> set[str]:
    """The folders of reproduce/ that hold Python files."""
    return {p.parent.relative_to(ROOT / "reproduce").parts[0] for p in (ROOT / "reproduce").rglob("*.py")
            if p.parent != ROOT / "reproduce"}


def stage_of(module: str, folders: set[str]) -> str | None:
    """The stage of a module of reproduce/<stage>/ (None for reproduce/*.py and other packages)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "reproduce" and len(parts) > 1 and parts[1] in folders else None


def stage_rule_break(module: str, dep: str, folders: set[str], stages=STAGES) -> str | None:
    """Why ``module`` may not import the project module ``dep`` under the stage rules; None if it may."""
    stage = stage_of(module, folders)
    if stage is None or dep.split(".")[0] != "reproduce":
        return None
    if stage not in stages:
        return f"reproduce/{stage}/ is a stage missing from STAGES (add it with the stages it may import)"
    allowed = stages[stage]
    other = stage_of(dep, folders)
    if allowed == ANY or dep in STAGE_SHARED or other == stage or other in allowed:
        return None
    if other is None:
        return f"imports {dep}: a stage imports of reproduce's own modules only {', '.join(STAGE_SHARED)}"
    return (f"imports {dep}: stage {stage} may import {', '.join(sorted(allowed)) or 'no other stage'} "
            f"(and {', '.join(STAGE_SHARED)})")


def test_the_stage_rule_finds_what_it_forbids():
    folders = {"runtime", "runs", "training", "evaluation", "commands", "newstage"}
    assert stage_rule_break("reproduce.runtime.device", "reproduce.training.loop", folders)
    assert stage_rule_break("reproduce.runs.checkpoint", "reproduce.cli", folders)
    assert stage_rule_break("reproduce.runs.checkpoint", "reproduce", folders)
    assert "missing from STAGES" in stage_rule_break("reproduce.newstage.x", "reproduce.runtime", folders)
    for module, dep in (("reproduce.training.loop", "reproduce.evaluation.evaluate"),
                        ("reproduce.training.loop", "reproduce.training.data"),
                        ("reproduce.runtime.device", "reproduce.errors"),
                        ("reproduce.commands.train", "reproduce.cli"),
                        ("reproduce.cli", "reproduce.commands"),
                        ("reproduce.runtime", "fuel_datasets.layout")):
        assert stage_rule_break(module, dep, folders) is None, (module, dep)


def test_every_folder_of_reproduce_is_a_stage():
    missing = [f"reproduce/{folder}/: a stage missing from STAGES (add it with the stages it may import)"
               for folder in sorted(stage_folders() - set(STAGES))]
    assert not missing, missing


def test_each_stage_imports_only_the_stages_it_may():
    folders = stage_folders()
    files = {module_name(p): p for p in sources(PACKAGES + SCRIPTS)}
    wrong = []
    for path in sources(("reproduce",)):
        name = module_name(path)
        for dep, line in sorted(set(import_sites(path)), key=lambda site: site[1]):
            why = stage_rule_break(name, dep, folders) if dep in files and dep != name else None
            if why:
                wrong.append(f"{path.relative_to(ROOT)}:{line} {why}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------------------
# Tests import builders (tests/helpers), never another test file
# ---------------------------------------------------------------------------------------------------

TESTS = ROOT / "tests"
# an import statement inside a string: a script that a test writes and runs
_SCRIPT_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import\b|import[ \t]+([\w., \t]+))", re.M)


def imports_in(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in ``path``: statements (``from a import b`` gives a and a.b), and
    import lines inside strings (scripts written and run by a test)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found += [(module, node.lineno)] + [(f"{module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for match in _SCRIPT_IMPORT.finditer(node.value):
                line = node.lineno + node.value.count("\n", 0, match.start())
                names = [match[1]] if match[1] else [n.split()[0] for n in match[2].split(",") if n.strip()]
                found += [(name, line) for name in names]
    return sorted(found, key=lambda site: site[1])


def imports_of_test_files(path: Path, test_files: dict[str, Path], root: Path = ROOT) -> list[str]:
    """Where ``path`` imports one of ``test_files`` ({stem: path}): "file:line imports ...", the files
    named relative to ``root``."""
    wrong, seen = [], set()
    for module, line in imports_in(path):
        hit = next((part for part in module.split(".") if part in test_files), None)
        if hit and (line, hit) not in seen:        # `from <test file> import y` names it and it.y
            seen.add((line, hit))
            wrong.append(f"{path.relative_to(root)}:{line} imports {module}, the test file "
                         f"{test_files[hit].relative_to(root)}: move what it shares to tests/helpers/")
    return wrong


def test_the_test_import_finder_sees_statements_and_scripts(tmp_path):
    # planted test files are named check_*: a literal test-file import here would be one itself
    path = tmp_path / "check_a.py"
    path.write_text('import os\nfrom check_b import x\nfrom helpers import videos\nCHILD = """\n'
                    '    import sys\n    from check_c import y\n"""\nimport tests.z.check_d as d\n')
    stems = {"check_b": tmp_path / "check_b.py", "check_c": tmp_path / "c" / "check_c.py",
             "check_d": tmp_path / "z" / "check_d.py"}
    assert {(module, line) for module, line in imports_in(path)} >= {
        ("check_b", 2), ("check_b.x", 2), ("check_c", 6), ("tests.z.check_d", 8)}
    lines = [text.split(" imports")[0] for text in imports_of_test_files(path, stems, root=tmp_path)]
    assert lines == ["check_a.py:2", "check_a.py:6", "check_a.py:8"]


def test_no_test_file_imports_another():
    test_files = {p.stem: p for p in TESTS.rglob("test_*.py")}
    wrong = [line for path in sorted(TESTS.rglob("*.py")) for line in imports_of_test_files(path, test_files)]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------------------
# The repository refers only to itself
# ---------------------------------------------------------------------------------------------------

# Names of documents that live outside the repository (a checkout beside it): code, tests, README.md,
# docs/ and help texts must not send a reader there. The names are assembled here, so that not even this
# file holds them whole.
_MD = ".md"
OUTSIDE = ("SPEC" + _MD, "SPEC" + " §", "BLOCKS" + "_FUEL", "FORMATS" + _MD, "DESIGN" + _MD, "STYLE" + _MD,
           ".." + "/shared", "shared" + "/")
_DOCS_PATH = re.compile(r"(?<![\w./-])docs/([\w.-]+\.md)")
_NOT_CHECKED: tuple[str, ...] = ()
_SKIPPED_DIRS = {".git", ".venv", "results", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache",
                 ".hypothesis"}


def repository_files() -> list[Path]:
    """The repository's files: tracked ones and new ones git does not ignore; without git, every file
    outside .git, the virtualenv, results and caches."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode()
        paths = [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if not _SKIPPED_DIRS & set(p.relative_to(ROOT).parts)
                 and not any(part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    return sorted({p for p in paths if p.is_file() and str(p.relative_to(ROOT)) not in _NOT_CHECKED})


def text_of(path: Path) -> str | None:
    """A text file's content; None for a binary one (NUL bytes, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_references(text: str) -> list[tuple[int, str]]:
    """(line, name) of every mention of a document outside the repository."""
    return [(number, name) for number, line in enumerate(text.splitlines(), 1)
            for name in OUTSIDE if name in line]


def missing_docs(text: str, docs: Path) -> list[tuple[int, str]]:
    """(line, path) of every ``docs/<name>.md`` mentioned that ``docs`` does not hold."""
    return [(number, f"docs/{match[1]}") for number, line in enumerate(text.splitlines(), 1)
            for match in _DOCS_PATH.finditer(line) if not (docs / match[1]).is_file()]


def test_the_reference_finders_find_them(tmp_path):
    spec, shared, design, nowhere = OUTSIDE[0], OUTSIDE[6], OUTSIDE[4], "docs/" + "nowhere.md"
    text = f'see {spec}\nok\n"{shared}/x"\n{OUTSIDE[1]}6 and {design}\nthe docs/paper.md, {nowhere}\n'
    assert outside_references(text) == [(1, spec), (3, shared), (3, OUTSIDE[7]), (4, OUTSIDE[1]), (4, design)]
    (tmp_path / "paper.md").write_text("")
    assert missing_docs(text, tmp_path) == [(5, nowhere)]
    assert missing_docs("benchmarks/docs/x.md and mydocs/y.md", tmp_path) == []
    assert outside_references("docs/formats.md, design notes, shared memory") == []


def test_no_reference_to_a_document_outside_the_repository():
    wrong = [f"{path.relative_to(ROOT)}:{line} names {name!r}, a document outside the repository"
             for path in repository_files() if (text := text_of(path)) is not None
             for line, name in outside_references(text)]
    assert not wrong, "\n".join(wrong)


def test_every_docs_page_named_exists():
    wrong = [f"{path.relative_to(ROOT)}:{line} names {name}, which does not exist"
             for path in repository_files() if (text := text_of(path)) is not None
             for line, name in missing_docs(text, ROOT / "docs")]
    assert not wrong, "\n".join(wrong)
