"""The documentation site builds strictly (broken links, bad references and warnings fail), and the encoders page is
generated from the model cards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="mkdocs not installed (pip install -e .[docs])")
def test_docs_build_strictly_with_the_cards_in_them(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "site" / "encoders" / "index.html").read_text()
    for text in ("HuBERT-ECG (<code>hubert_ecg</code>)", "hf:Edoardo-BS/hubert-ecg-base/model.safetensors@main", "cardio_learning"):
        assert text in page, text


def test_readme_points_at_pages_that_exist():
    import re

    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\((docs/[^)]+\.md)\)", readme):
        assert (ROOT / link).is_file(), link
