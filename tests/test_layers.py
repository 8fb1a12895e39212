"""Imports run one way: down the floors of the package (shared/DESIGN.md, README "Layout").

The floors, lowest first (`FLOORS`, the one place the order is written down):

0. the package root (`__version__`) and `errors`;
1. `io`, `physics`, `stats`, `engine`, `lock`, `sdnotify`, `snapshot`, `stages`,
   `background`: files,
   physics, statistics, batches on a device and small leaf helpers, each knowing none of
   the others;
2. `watch` (discovery, file completeness, journal; reads MRC headers through `io`);
3. `model` (score network, tiling, inference, training; runs on `engine`, uses `physics`
   and `stats`);
4. `outputs`, `acquisition`, `report`, `dashboard`, `session_adaptation`, `runtime`,
   `status` (the daemon's published snapshots);
5. `processing` (the one path for one micrograph);
6. `config` (settings of every command, validated);
7. `daemon`, `distributed`, `oneshot` (what `denoise` writes) and `options` (the CLI's
   shared option declarations);
8. `demo` (a simulated session through the daemon);
9. `cli`.

A module may import its own unit (package or module) and any unit on a lower floor; an
import of a unit on a higher floor, or of another unit on the same floor, is a violation.
Imports inside functions and under `TYPE_CHECKING` count too. The ground-truth metrics
(`stats.ground_truth`) are for the benchmarks and tests only, and the package never
imports `benchmarks` or `tests`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "streamdenoise"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
ROOT_UNIT = "__init__"
"""The package root module's unit name (it holds `__version__`)."""

FLOORS: tuple[tuple[str, ...], ...] = (
    (ROOT_UNIT, "errors"),
    ("io", "physics", "stats", "engine", "lock", "sdnotify", "snapshot", "stages", "background"),
    ("watch",),
    ("model",),
    ("outputs", "acquisition", "report", "dashboard", "session_adaptation", "runtime", "status"),
    ("processing",),
    ("config",),
    ("daemon", "distributed", "oneshot", "options"),
    ("demo",),
    ("cli",),
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}
BENCHMARK_ONLY = f"{PACKAGE}.stats.ground_truth"


def module_name(path: Path) -> str:
    """`streamdenoise/io/mrc.py` → "streamdenoise.io.mrc"; a package's `__init__.py` → the
    package's name."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The floor unit of a module: "streamdenoise.io.mrc" → "io", "streamdenoise" → the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT_UNIT


def is_package_module(module: str) -> bool:
    """Whether `module` names a module or package of the source tree."""
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative).is_dir()


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """The package's modules that `source` (the text of `module`) imports, anywhere in it.
    `from streamdenoise.x import name` counts as an import of streamdenoise.x.name when that
    is a module, else of streamdenoise.x."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if is_package_module(child) else target)
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Imports of `sources` ({module: (text, is a package)}) that run up or sideways."""
    found = []
    for module, (source, is_package) in sorted(sources.items()):
        unit = unit_of(module)
        for target in sorted(imported_modules(source, module, is_package)):
            other = unit_of(target)
            if unit not in FLOOR or other not in FLOOR:
                continue  # test_every_module_is_on_a_floor names it
            if other != unit and FLOOR[other] >= FLOOR[unit]:
                found.append(
                    f"{module} (floor {FLOOR[unit]}) imports {target} (floor {FLOOR[other]})"
                )
    return found


def package_sources() -> dict[str, tuple[str, bool]]:
    """Every module of the package: {name: (text, is a package)}."""
    return {
        module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(ROOT.rglob("*.py"))
    }


def test_every_module_is_on_a_floor() -> None:
    missing = sorted({unit_of(m) for m in package_sources()} - set(FLOOR))
    assert not missing, f"place these units on a floor of FLOORS: {missing}"


def test_no_import_runs_up_or_sideways() -> None:
    assert violations(package_sources()) == []


def test_the_check_finds_an_upward_and_a_sideways_import() -> None:
    sources = {
        f"{PACKAGE}.engine.fake": (f"from {PACKAGE}.model.tiling import plan_tiles", False),
        f"{PACKAGE}.io.fake": (f"def f():\n    import {PACKAGE}.stats.noise\n", False),
        f"{PACKAGE}.daemon": (f"from {PACKAGE}.io import read_mrc", False),
        f"{PACKAGE}.model.fake": (
            "from .tiling import plan_tiles\nfrom ..engine import batches",
            False,
        ),
    }
    assert violations(sources) == [
        f"{PACKAGE}.engine.fake (floor 1) imports {PACKAGE}.model.tiling (floor 3)",
        f"{PACKAGE}.io.fake (floor 1) imports {PACKAGE}.stats.noise (floor 1)",
    ]


def test_the_floors_name_each_unit_once() -> None:
    units = [unit for floor in FLOORS for unit in floor]
    assert len(units) == len(set(units))


def test_relative_imports_resolve_to_the_package_modules() -> None:
    source = "from . import mrc\nfrom ..engine import batches\nfrom .star import read_star"
    assert imported_modules(source, f"{PACKAGE}.io", is_package=True) == {
        f"{PACKAGE}.io.mrc",
        f"{PACKAGE}.engine.batches",
        f"{PACKAGE}.io.star",
    }


def test_ground_truth_metrics_stay_out_of_the_package() -> None:
    users = [
        module
        for module, (source, is_package) in package_sources().items()
        if module != BENCHMARK_ONLY
        and BENCHMARK_ONLY in imported_modules(source, module, is_package)
    ]
    assert users == []


def test_the_package_imports_no_benchmark_or_test() -> None:
    for module, (source, _) in package_sources().items():
        tree = ast.parse(source)
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("benchmarks", "tests")], module
