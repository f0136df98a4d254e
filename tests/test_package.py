"""Package-level promises: cheap import, CLI dispatch, README and CI agree."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bnproof
from bnproof.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_cheap():
    code = (
        "import sys, bnproof; "
        "heavy = [m for m in ('sympy', 'numba', 'matplotlib', 'torch') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"import bnproof pulled in {out}"


def test_version_matches_metadata():
    from importlib.metadata import version

    assert bnproof.__version__ == version("bnproof")


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def _fenced_commands(text):
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_quick_start_is_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = _fenced_commands(quick)
    assert len(commands) == 2, commands
    assert all("\n" not in c for c in commands)
    assert commands[0].startswith("pip install") and "bnproof report" in commands[0]
    assert commands[1].startswith("pip install") and commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    test_command = _fenced_commands(quick)[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci_lines[-1] == test_command


def test_readme_python_examples_run():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    from bnproof.symbolic._registry import _REGISTRY

    has_torch = importlib.util.find_spec("torch") is not None
    registered = dict(_REGISTRY)  # the examples register a claim: leave no trace
    kernels = None
    try:
        for block in blocks:
            if "import torch" in block and not has_torch:
                continue  # PyTorch is an optional peer
            namespace: dict = {}
            exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
            if "dx" in namespace:
                kernels = namespace
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(registered)
    # The kernels example's gradients have the input's shape and dtype.
    assert kernels is not None
    namespace = kernels
    assert namespace["dx"].shape == namespace["x"].shape
    assert namespace["dx"].dtype == namespace["x"].dtype


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"]])
def test_help_does_not_import_torch(argv):
    code = (
        "import sys; from bnproof.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip().splitlines()[-1]
    assert out == "False"
