"""The README's Python examples run as written, in order, in one namespace."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2, "README has lost a python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "a" / "report.html").exists()
    assert "spotlight-0" in capsys.readouterr().out


def test_every_test_the_readme_names_exists():
    """The README's "Reliability" table names the tests that hold each promise: they must exist."""
    import ast

    named = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", README.read_text())
    assert len(named) >= 15, "the Reliability table has lost its tests"
    root = README.parent
    for file, test in named:
        assert (root / file).is_file(), file
        if test:
            tree = ast.parse((root / file).read_text())
            assert test in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, f"{file}::{test}"
