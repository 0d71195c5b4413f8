"""The README's promises about itself: its Python example runs as written, offline, in an empty
folder; it stays short enough to read."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_is_at_most_250_lines_with_one_python_example():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert len(python_blocks(text)) == 1


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written_offline(tmp_path):
    [example] = python_blocks(README.read_text(encoding="utf-8"))
    (tmp_path / "example.py").write_text(example)
    environment = {**os.environ, "DCGAN_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
                   "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                   "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                   "TORCH_HOME": str(tmp_path / "torch")}  # no network and no warm caches
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True,
                            env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'fid'" in result.stdout and "torch.Size([4, 3, 32, 32])" in result.stdout
    assert (tmp_path / "car42.png").is_file() and (tmp_path / "walk.gif").is_file()
    assert len(list((tmp_path / "trucks" / "truck").glob("*.png"))) == 200
    assert list((tmp_path / "runs").glob("*/generator.safetensors"))
