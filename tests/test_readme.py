"""The README's Python examples run as written (docs that drift are bugs)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "('consolidation', 'retracement')" in out
    assert (tmp_path / "moola_data" / "data" / "splits" / "es-fc" / "v1.json").is_file()


def test_ci_runs_the_readme_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    command = [line for line in ci.splitlines() if line and not line.startswith("#")][-1]
    assert command.strip() in README.read_text()
