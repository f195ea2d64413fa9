"""Shared fixtures: the real offline data folder (skipped when absent) and small demo datasets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench import REPO_ROOT

SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data folder {SHARED} not present (set BENCH_SHARED_DATA)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes caches and its workspace under its own temporary folders, never the user's."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("BENCH_HOME", str(tmp_path_factory.mktemp("workspace")))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Small demo datasets in all three layouts (generated once per test session)."""
    from bench.data.demo import ensure_demo

    root = tmp_path_factory.mktemp("demo")
    ensure_demo("ptbxl", root / "ptbxl", 120, seed=0, progress=False)
    ensure_demo("cpsc2018", root / "cpsc2018", 60, seed=0, progress=False)
    ensure_demo("csn", root / "csn", 60, seed=0, progress=False)
    return root


def _start_chromium():
    """Debian's chromium and its driver (scripts/setup.sh installs both); the test is skipped without them."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("chromium / chromedriver not installed (scripts/setup.sh installs Debian's)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1200"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture
def chromium():
    """A function that starts headless chromium (the page tests quit it themselves)."""
    return _start_chromium
