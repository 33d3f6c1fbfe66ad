"""What a new user and Spaces rely on: README, requirements, CI, and the project's layering rules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


ZEROGPU_TORCH = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}  # the versions ZeroGPU lists (reference/ecosystem.md)
TORCHVISION_FOR = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}


def test_requirements_txt_matches_pyproject_dependencies():
    """Spaces installs requirements.txt only: the project's dependencies, with torch pinned to a
    version ZeroGPU supports (and its torchvision) inside pyproject's range, plus `spaces`."""
    from packaging.requirements import Requirement

    reqs = {
        Requirement(line).name: Requirement(line)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    deps = {Requirement(d).name: Requirement(d) for d in PYPROJECT["project"]["dependencies"]}
    spaces_extra = [Requirement(d) for d in PYPROJECT["project"]["optional-dependencies"]["spaces"]]
    assert set(reqs) == set(deps) | {r.name for r in spaces_extra}
    assert str(reqs["spaces"].specifier) == "", "spaces is not pinned (Spaces manages its version)"
    for name, dep in deps.items():
        if name in ("torch", "torchvision"):
            (pin,) = list(reqs[name].specifier)
            assert pin.operator == "==" and dep.specifier.contains(pin.version), (name, pin)
        else:
            assert _norm(str(reqs[name])) == _norm(str(dep)), name
    torch_pin = next(iter(reqs["torch"].specifier)).version
    assert torch_pin in ZEROGPU_TORCH, f"ZeroGPU does not list torch {torch_pin}"
    assert next(iter(reqs["torchvision"].specifier)).version == TORCHVISION_FOR[torch_pin]


def test_spaces_front_matter_matches_the_pinned_gradio():
    front = README.split("---", 2)[1]
    meta = dict(line.split(":", 1) for line in front.strip().splitlines())
    meta = {k.strip(): v.strip().strip('"') for k, v in meta.items()}
    gradio_pin = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("gradio=="))
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == gradio_pin.split("==")[1]
    assert meta["python_version"] == "3.12"
    assert meta["app_file"] == "app.py" and (ROOT / "app.py").exists()
    assert meta["license"]


def test_readme_model_table_is_generated_from_the_registry():
    result = subprocess.run([sys.executable, "tools/gen_readme.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)
    assert "set -euo pipefail" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "HF_HUB_OFFLINE=1" in makefile and "chromium" in makefile


def test_optional_extras_exist():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"yolo", "gemini", "test", "mcp", "engines"} <= set(extras)
    assert any(r.startswith("ultralytics") for r in extras["yolo"])
    assert not any("ultralytics" in d for d in PYPROJECT["project"]["dependencies"]), "AGPL stays optional"


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_model_loaders_never_import_gradio():
    offenders = [p.name for p in (ROOT / "model_loaders").rglob("*.py") if "gradio" in _imports(p, False)]
    assert not offenders


def _project_imports(path: Path) -> set[str]:
    """Dotted project modules imported anywhere in ``path`` (``model_loaders.core.cache``, ...)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("model_loaders.")}


# The layers of model_loaders, bottom first: a module may import its own layer and those below.
LAYERS = ("core", "families", "backends", "tasks")


@pytest.mark.parametrize("layer", LAYERS)
def test_model_loaders_imports_only_point_downwards(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    offenders = []
    for path in (ROOT / "model_loaders" / layer).rglob("*.py"):
        for name in _project_imports(path):
            parts = name.split(".")
            if len(parts) > 1 and parts[1] in LAYERS and parts[1] not in allowed:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_tabs_only_reach_models_through_the_task_layer():
    offenders = []
    for path in (ROOT / "tabs").glob("*.py"):
        offenders += [f"{path.name} imports {n}" for n in _project_imports(path)
                      if n.startswith(("model_loaders.families", "model_loaders.backends"))]  # fmt: skip
    assert not offenders, offenders


def test_tabs_never_name_a_family_or_a_registry_key():
    from model_loaders.core.registry import FAMILIES, REGISTRY

    names = set(FAMILIES) | set(REGISTRY)
    offenders = []
    for path in (ROOT / "tabs").glob("*.py"):
        text = path.read_text()
        offenders += [f"{path.name}: {n}" for n in names if re.search(r"[\"']" + re.escape(n) + r"[\"']", text)]
    assert not offenders, offenders


def test_tabs_never_import_torch_or_transformers_at_module_level():
    heavy = {"torch", "transformers", "ultralytics"}
    offenders = [p.name for p in (ROOT / "tabs").glob("*.py") if heavy & _imports(p, True)]
    assert not offenders


def test_no_remote_code_and_no_print_in_library_code():
    for folder in ("model_loaders", "tabs"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"trust_remote_code\s*=\s*True", text), path
            assert not re.search(r"^\s*print\(", text, re.M), path


def test_every_tab_module_is_listed_once_and_exists():
    import importlib

    import tabs

    assert len(set(tabs.TABS)) == len(tabs.TABS)
    assert tabs.TABS[-1] == "tabs.models"
    for name in tabs.TABS:
        module = importlib.import_module(name)
        assert isinstance(module.TITLE, str) and callable(module.build)


def test_example_assets_have_attribution():
    from tabs._examples import EXAMPLES

    attribution = (ROOT / "assets" / "ATTRIBUTION.md").read_text()
    for name in EXAMPLES:
        assert (ROOT / "assets" / name).exists()
        assert f"`{name}`" in attribution
