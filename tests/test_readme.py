"""The README's example and ``python -m cdp_wsroute demo`` run as documented, against real Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def example_code(readme: str) -> str:
    """The first ```python block under the "## Example" heading."""
    section = re.search(r"^## Example[ \t]*\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert section is not None, 'README.md has no "## Example" section'
    block = re.search(r"^```python[ \t]*\n(.*?)^```[ \t]*$", section.group(1), re.MULTILINE | re.DOTALL)
    assert block is not None, 'no ```python block under "## Example"'
    return block.group(1)


def run_python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -W error: the documented happy path runs without a single warning.
    return subprocess.run(
        [sys.executable, "-W", "error", *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def test_example_extraction() -> None:
    readme = "# x\n\n## Install\n\n```python\nwrong()\n```\n\n## Example\n\ntext\n\n```python\nright()\n```\n"
    assert example_code(readme) == "right()\n"


@pytest.mark.browser
def test_readme_example_runs(tmp_path: Path) -> None:
    code = example_code(README.read_text())
    assert "trio.run(" in code  # it runs itself, as a script would
    result = run_python("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hello", "42"], result.stdout + result.stderr


@pytest.mark.browser
def test_demo_runs(tmp_path: Path) -> None:
    # The demo's transcript is being reworked (it showcases WebSocket routing); what stays is how it starts
    # (the browser it launched) and how it ends (everything closed).
    result = run_python("-m", "cdp_wsroute", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    assert re.match(r"launched Chromium/\d+\.\d+\.\d+\.\d+\b", lines[0]), lines
    assert "browser closed" in lines[-1], lines
    assert "Traceback" not in result.stderr
