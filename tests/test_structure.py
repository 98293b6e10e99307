"""The package's shape: applications reach each other only through the library, and functions stay short."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "enhance"
APPLICATIONS = ("runs", "viewer", "comparison", "api", "cli")
SINGLE_IMAGE_CALLERS = ("runs", "viewer", "comparison")
MAX_FUNCTION_LINES = 60
# A function may be longer when a comment saying why sits on its `def` line or just above.
LONG_NOTE = "# long:"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every enhance module `path` imports, at any depth of the file (deferred imports included)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("enhance")}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module.startswith("enhance"):
                found.add(module)
                found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _application(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "enhance" and parts[1] in APPLICATIONS else None


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_application_imports_another():
    offences = []
    for path in _sources():
        own = _application(_module_name(path))
        if own is None:
            continue
        for module in _imports(path):
            other = _application(module)
            if other is None or other == own:
                continue
            # The command line is the thin layer over the public entry of each application
            # (`enhance.runs.run`, `enhance.comparison.compare`, ...), never their insides.
            if own == "cli" and (module.count(".") == 1 or _is_attribute_of(module)):
                continue
            offences.append(f"{_module_name(path)} imports {module}")
    assert not offences, "\n".join(offences)


def _is_attribute_of(module: str) -> bool:
    """`enhance.comparison.compare` names a function of the package, not a submodule."""
    package, _, name = module.rpartition(".")
    directory = PACKAGE / package.split(".", 1)[1].replace(".", "/")
    return not (directory / f"{name}.py").exists() and not (directory / name).is_dir()


def test_the_single_image_core_is_the_road_of_all_three_callers():
    for caller in SINGLE_IMAGE_CALLERS:
        paths = [PACKAGE / f"{caller}.py"] if (PACKAGE / f"{caller}.py").exists() else list((PACKAGE / caller).rglob("*.py"))
        imported = set().union(*(_imports(path) for path in paths))
        assert "enhance.enhance_one" in imported, f"{caller} does not enhance through enhance.enhance_one"


def test_no_function_is_longer_than_sixty_lines_without_a_note():
    offences = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                noted = any(LONG_NOTE in lines[i - 1] for i in (first - 1, node.lineno) if i >= 1)
                if length > MAX_FUNCTION_LINES and not noted:
                    offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} has {length} lines")
    assert not offences, "\n".join(offences)
