"""The package's shape: a stage imports only the stages before it (README, "Layout").

Evaluation comes before training because training selects epochs, blends and tuning trials on
the validation split with the evaluation protocols (``tfmmrec.evaluate.protocol``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfmmrec"
STAGES = ("data", "media", "encoders", "fusion", "models", "evaluate", "train", "export", "serving")
TOP = ("pipeline", "cli")  # connect the stages; no stage may import them


def imported_modules(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return [(line, m) for line, m in out if m.startswith("tfmmrec.")]


def later_stage_imports(stage: str, package: Path = PACKAGE) -> list[str]:
    allowed = set(STAGES[:STAGES.index(stage) + 1])
    bad = []
    for path in sorted((package / stage).rglob("*.py")):
        for line, module in imported_modules(path):
            target = module.split(".")[1]
            if target in TOP or (target in STAGES and target not in allowed):
                bad.append(f"{path.relative_to(package.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_earlier_stages(stage: str) -> None:
    assert later_stage_imports(stage) == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.py").write_text("from tfmmrec.train.fit import train_retrieval\n"
                                              "import tfmmrec.pipeline\nfrom tfmmrec.data.loader import Dataset\n")
    assert later_stage_imports("data", tmp_path) == [f"{tmp_path.name}/data/bad.py:1 imports tfmmrec.train.fit",
                                                     f"{tmp_path.name}/data/bad.py:2 imports tfmmrec.pipeline"]


def test_every_package_folder_is_a_known_stage() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(STAGES)
