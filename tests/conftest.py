"""Shared fixtures. TensorFlow is imported once per test session, so expensive things (a
small demo catalog, one trained run with exports) are built once and shared where sharing is
honest: tests that read them never modify them."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import tfmmrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads Keras)

SMALL_DEMO = dict(n_items=800, n_users=600, n_interactions=20000, seed=3)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Built-in encoders are written under TFMMREC_HOME: build them fresh for the test session."""
    os.environ["TFMMREC_HOME"] = str(tmp_path_factory.mktemp("tfmmrec_home"))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo catalog (real PNG/WAV files, one corrupt PNG, one truncated WAV). Read-only."""
    from tfmmrec.data.demo import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo"), **SMALL_DEMO)


@pytest.fixture(scope="session")
def trained_run(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One short end-to-end run on the small demo (cold-start split), with both exports. Read-only."""
    from tfmmrec.config import RunConfig
    from tfmmrec.pipeline import run

    cfg = RunConfig().with_overrides([
        "split.strategy=cold_start", "split.cold_item_frac=0.2",
        "retrieval.batch_size=512", "retrieval.epochs=6", "ranking.epochs=3", "ranking.batch_size=512",
        "export.top_k=10"])
    out = tmp_path_factory.mktemp("run")
    return run(demo_dir, out, cfg, export_dir=out / "saved_models", verbose=0)


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SavedModels with the interfaces of the real TF-Hub encoders (tests/hub_models.py). Read-only."""
    from tests.hub_models import write_tiny_hub_models

    return write_tiny_hub_models(tmp_path_factory.mktemp("hub"))


@pytest.fixture()
def log() -> pd.DataFrame:
    """A tiny interaction log (dataset rows as ``item_idx``): 10 items; rows 8 and 9 only in test
    (cold); user 'z' only in test. For the id-mapping, input and evaluation-protocol tests."""
    rows = [("a", i, "train") for i in (0, 1, 2, 3)] + [("b", i, "train") for i in (2, 3, 4, 5, 6, 7)] + \
           [("a", 5, "valid"), ("a", 8, "test"), ("b", 9, "test"), ("b", 1, "test"), ("z", 0, "test")]
    return pd.DataFrame(rows, columns=["user_id", "item_idx", "split"])


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``, setup.cfg), keep the tests that share an expensive
    fixture on one worker, so that it is built once, not once per worker: those of the session's
    ``trained_run`` (a whole run with exports, the suite's costliest fixture), and per test module
    those of the module's own module-scoped fixtures (a trained model, an export). Other tests are
    spread one by one. Without xdist the mark does nothing."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if "trained_run" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("trained_run"))
            continue
        module = getattr(item, "module", None)
        for name in item.fixturenames:
            defs = info.name2fixturedefs.get(name) or ()
            if any(d.scope == "module" and module is not None and d.func.__module__ == module.__name__ for d in defs):
                item.add_marker(pytest.mark.xdist_group(module.__name__))
                break
