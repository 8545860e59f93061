"""The package layout holds: pure flow modules, layered imports without cycles, small modules and functions.

The layers, lowest first (README, *Architecture*): an import may only go to the same layer or a lower one, at module
level or inside a function. ``pipeline.models`` sits above ``teacher`` and ``students`` because it loads their
encoders; they read the model-folder contract from the leaf ``pipeline.model_folder`` instead.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "teacher", "students")
LAYERS = [  # (name, module prefixes)
    ("core", ("pipeline.records", "pipeline.config", "pipeline.files", "pipeline.plots", "pipeline.model_folder",
              "pipeline.label_folder", "pipeline.evaluate", "pipeline.flow", "pipeline")),
    ("teacher", ("teacher",)),
    ("students", ("students",)),
    ("models", ("pipeline.models",)),
    ("kafka", ("pipeline.kafka",)),
    ("ops", ("pipeline.ops",)),
    ("cli", ("pipeline.cli",)),
]
BROKER_AND_MODEL_LIBRARIES = {"kafka", "faust", "aiokafka", "torch", "transformers"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80
ALLOWED_LONGER = {  # "path:function" → why it stays long
    "pipeline/ops/backpressure.py:run_backpressure": "one timed experiment; its closures share the clock, the "
                                                     "producer, the counter and the samples",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def layer_of(module: str) -> int:
    best = max(((i, len(prefix)) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), key=lambda t: t[1])
    return best[0]


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, at module level or in a function (``from a import b``: ``a.b`` when
    ``b`` is a module of ours, else ``a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    return {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}


FLOW_MODULES = sorted(m for m in source_modules() if m == "pipeline.flow" or m.startswith("pipeline.flow."))


@pytest.mark.parametrize("module", FLOW_MODULES)
def test_flow_modules_import_no_broker_or_model_library(module):
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(BROKER_AND_MODEL_LIBRARIES)!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"importing {module} loads {out.stdout.strip()}"


def test_imports_only_go_down_the_layers():
    wrong = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
             for a, targets in import_graph().items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert not wrong, "\n".join(wrong)


def test_flow_and_kafka_never_import_harnesses_or_the_cli():
    graph = import_graph()
    wrong = [f"{a} imports {b}" for a, targets in graph.items() if a.startswith(("pipeline.flow", "pipeline.kafka"))
             for b in targets if b.startswith(("pipeline.ops", "pipeline.cli"))]
    assert not wrong, wrong


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph()
    # the layers are a chain by construction; module by module there must be no cycle either
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    packages = {(a.split(".")[0], b.split(".")[0]) for a, ts in graph.items() for b in ts}
    assert ("teacher", "students") not in packages  # teachers know nothing of students


def test_teacher_and_students_use_only_the_pipeline_core():
    allowed = LAYERS[0][1]
    wrong = [f"{a} imports {b}" for a, targets in import_graph().items() if a.split(".")[0] in ("teacher", "students")
             for b in targets if b.startswith("pipeline") and layer_of(b) != 0]
    assert not wrong, f"allowed: {allowed}; " + "; ".join(wrong)


def test_modules_and_functions_stay_small():
    too_long = []
    for path in [*source_modules().values(), *sorted((ROOT / "bench").glob("*.py"))]:
        source = path.read_text()
        relative = path.relative_to(ROOT).as_posix()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{relative}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and f"{relative}:{node.name}" not in ALLOWED_LONGER:
                    too_long.append(f"{relative}:{node.name}: {length} lines")
    assert not too_long, too_long


def _picks_best_by_f1(node: ast.AST) -> bool:
    """``max(..., key=...f1...)`` or ``sorted(..., key=...f1...)``: choosing a threshold by its F1."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "sorted")
            and any(k.arg == "key" and any(isinstance(n, ast.Attribute) and n.attr == "f1" for n in ast.walk(k.value))
                    for k in node.keywords))


def _threshold_grid(node: ast.AST) -> bool:
    """``np.arange(0.4, 0.96, 0.02)``-like: a grid of cosine thresholds."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "arange"
            and len(node.args) >= 2 and all(isinstance(a, ast.Constant) and isinstance(a.value, float)
                                            and 0.0 < a.value < 1.0 for a in node.args))


def test_one_threshold_sweep():
    """Thresholds are chosen in one place (``pipeline.evaluate.threshold_sweep``, one grid, one tie-break), so a
    model gets the same dev F1 from training, ship, retrain, eval --tune and students evaluate."""
    copies = []
    for name, path in source_modules().items():
        if name == "pipeline.evaluate":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if _picks_best_by_f1(node) or _threshold_grid(node):
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not copies, f"a second threshold sweep: {copies}"


def test_one_served_model_decision():
    """Which folder is served, in which space, at which threshold is decided by ``pipeline.models.served_model``
    (and its ``cluster_space`` rule) alone: no other module reads the registry's promotion, the shipped release, the
    settings' centring/threshold flags or the tuned-space file to decide it."""
    deciding = {"promoted_dir", "shipped_student_serves", "read_cluster_space"}
    flags = {"centring", "threshold"}
    allowed = {"pipeline.models", "pipeline.model_folder", "students.registry", "pipeline.config",
               "pipeline.cli.students"}  # cli.students only prints what a registered folder was tuned at
    copies = []
    for name, path in source_modules().items():
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            called = isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
            flag = (isinstance(node, ast.Attribute) and node.attr in flags and isinstance(node.value, ast.Name)
                    and node.value.id == "settings")
            if called in deciding or flag:
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno} {called or 'settings.' + node.attr}")
    assert not copies, f"a second served-model decision: {copies}"


def test_committed_records_carry_no_machines_paths():
    """Shipped model folders and other committed JSON name files relative to the repository or ../shared."""
    import json as json_module

    def strings(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    tracked = subprocess.run(["git", "ls-files", "*.json"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    absolute = [f"{name}: {s}" for name in tracked if not name.endswith("tokenizer.json")
                for s in strings(json_module.loads((ROOT / name).read_text())) if s.startswith(("/", "~"))]
    assert not absolute, absolute


def test_portable_paths_name_the_repository_and_the_shared_data_relatively(tmp_path):
    from pipeline.files import REPO_ROOT, portable_path, resolve_portable

    shared_labels = REPO_ROOT.parent / "shared" / "data" / "labels" / "e5-int8-corpus"
    assert portable_path(shared_labels) == "../shared/data/labels/e5-int8-corpus"
    assert resolve_portable(portable_path(shared_labels)).resolve() == shared_labels.resolve()
    assert portable_path(REPO_ROOT / "students" / "default") == "students/default"
    assert portable_path(tmp_path) == str(tmp_path.resolve())  # outside both: absolute, and says so
