"""The README's two commands are the ones CI and users run, on the versions the README claims."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NEWEST, OLDEST = ROOT / "constraints" / "tf2.21.txt", ROOT / "constraints" / "tf2.17.txt"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of a constraints file (names normalised as pip does)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return out


def setup_requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in ("test", "audio", "io", "scann"):
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def test_readme_opens_with_two_commands_demo_then_tests_on_the_newest_tested_set() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("tfmmrec demo")
    assert commands[1].endswith("pytest")
    assert all("-c constraints/tf2.21.txt" in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim_then_the_suite_on_the_oldest_set() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_commands()[1] in ci_lines
    oldest = [line for line in ci_lines if "-c constraints/tf2.17.txt" in line]
    assert len(oldest) == 1 and oldest[0].endswith("&& pytest $OLDEST_SUBSET") and ".[test,audio,io,scann]" in oldest[0]
    # The subset names test files and folders that exist (a renamed one would silently drop out).
    script = (ROOT / ".ci" / "run").read_text()
    subset = script.split('OLDEST_SUBSET="')[1].split('"')[0].split()
    assert len(subset) >= 8 and all((ROOT / path).exists() for path in subset), subset


def test_the_constraints_files_are_the_two_ends_of_the_claimed_ranges() -> None:
    newest, oldest = pins(NEWEST), pins(OLDEST)
    assert (newest["tensorflow"], newest["tf-keras"], newest["numpy"][0]) == ("2.21.0", "2.21.0", "2")
    assert (oldest["tensorflow"], oldest["tf-keras"], oldest["numpy"]) == ("2.17.1", "2.17.0", "1.26.4")
    assert "tensorflow-io" not in newest and "scann" not in newest  # neither works with TF 2.21
    for name, versions in [("newest", newest), ("oldest", oldest)]:
        for req in setup_requirements():
            key = re.sub(r"[-_.]+", "-", req.name).lower()
            if key in versions:
                assert req.specifier.contains(versions[key], prereleases=True), (name, str(req), versions[key])
