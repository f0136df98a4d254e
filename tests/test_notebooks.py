"""The research notes in notebooks/ run top to bottom and are stored without outputs.

Each note is executed in a fresh kernel started from this interpreter (so the
kernel sees the same installed bnproof), and fails the test on any error or on
anything written to stderr (warnings included). The negative controls check
that the runner and the output check do fail when they should.
"""

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[notebooks]'")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[notebooks]'")
pytest.importorskip("ipykernel", reason="pip install -e '.[notebooks]'")

from jupyter_client.kernelspec import KernelSpec  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"

#: The notes, in reading order (notebooks/README.md lists the same files).
NOTES = (
    "01-bias-before-batch-norm.ipynb",
    "02-statistics-outside-the-gradient-step.ipynb",
    "03-batch-norm-in-float32.ipynb",
    "04-using-the-kernels.ipynb",
    "05-batch-norm-inside-pytorch.ipynb",
    "06-precise-statistics.ipynb",
    "07-your-own-claim.ipynb",
    "08-audit-a-model.ipynb",
)

#: Optional packages a note needs; without them its run is skipped.
REQUIRES = {"05-batch-norm-inside-pytorch.ipynb": ("torch",)}

#: Seconds one cell may take. A whole note runs in well under a minute on two
#: idle cores; the margin covers Numba compiling the kernels on a cold cache
#: and a machine shared with other jobs, without letting a hung cell stall CI.
CELL_TIMEOUT_SECONDS = 300

#: Seconds to wait for the kernel to start (imports of ipykernel only).
STARTUP_TIMEOUT_SECONDS = 120


def _executed_copy(path: Path) -> bool:
    """Whether ``path`` is an executed copy (``jupyter nbconvert --execute`` writes
    ``<note>.nbconvert.ipynb``); git ignores those, and so do these tests."""
    return path.name.endswith(".nbconvert.ipynb")


class _ThisInterpreter(KernelManager):
    """A kernel manager that runs ipykernel in this interpreter, whatever the name.

    A user-level ``python3`` kernelspec may point at another Python without
    bnproof; the notes must run against the environment under test.
    """

    @property
    def kernel_spec(self):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
        )


def _execute(nb, cwd: Path):
    """Run ``nb`` in place in a fresh kernel; raise CellExecutionError on an error.

    The client owns the kernel manager, so the kernel is shut down and its
    sockets closed whether the run passes or fails.
    """
    client = nbclient.NotebookClient(
        nb,
        kernel_manager_class=_ThisInterpreter,
        timeout=CELL_TIMEOUT_SECONDS,
        startup_timeout=STARTUP_TIMEOUT_SECONDS,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def _stored_outputs(nb) -> list[str]:
    """Describe every code cell that carries outputs or an execution count."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {index}: {len(cell.outputs)} stored output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {index}: execution_count {cell.execution_count}")
    return found


def _stderr_text(nb) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream" and out.name == "stderr"
    )


def _read(name: str):
    return nbformat.read(NOTEBOOKS_DIR / name, as_version=4)


# --------------------------------------------------------------------------- #
# what is stored
# --------------------------------------------------------------------------- #


def test_the_notes_are_exactly_the_listed_ones():
    on_disk = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb") if not _executed_copy(p))
    assert on_disk == sorted(NOTES)
    readme = (NOTEBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    for name in NOTES:
        assert name in readme, f"notebooks/README.md does not list {name}"


@pytest.mark.parametrize("name", NOTES)
def test_note_is_valid_and_stored_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert _stored_outputs(nb) == []
    assert any(c.cell_type == "markdown" for c in nb.cells)
    assert any(c.cell_type == "code" for c in nb.cells)


def test_output_check_sees_stored_outputs():
    # Negative control: a cell with an output and a count must be reported.
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=1)
    cell.outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert _stored_outputs(nb) == ["cell 0: 1 stored output(s)", "cell 0: execution_count 1"]


# --------------------------------------------------------------------------- #
# running them
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def _matplotlib_font_cache():
    """Build matplotlib's font cache here, not in a note.

    On a fresh machine the first import logs "building the font cache" to
    stderr, which the notes' stderr check would report as a failure.
    """
    pytest.importorskip("matplotlib.font_manager")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTES)
def test_note_runs_top_to_bottom(name, _matplotlib_font_cache):
    for module in REQUIRES.get(name, ()):
        pytest.importorskip(module, reason=f"{name} needs {module}")
    nb = _execute(_read(name), NOTEBOOKS_DIR)
    assert _stderr_text(nb) == "", f"{name} wrote to stderr"
    # Every code cell ran, and the note produced output to read.
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert any(c.outputs for c in code), f"{name} ran but showed nothing"
    # The stored file is untouched by the run.
    assert _stored_outputs(_read(name)) == []


@pytest.mark.slow
def test_runner_fails_on_an_error(tmp_path):
    # Negative control: a failing cell must fail the run, not pass silently.
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("assert x == 2, 'the claim does not hold'"),
        ]
    )
    with pytest.raises(CellExecutionError, match="the claim does not hold"):
        _execute(nb, tmp_path)


@pytest.mark.slow
def test_runner_uses_this_interpreter(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import sys, warnings; print(sys.executable)\nwarnings.warn('shown on stderr')"
            ),
        ]
    )
    _execute(nb, tmp_path)
    out = nb.cells[0].outputs
    stdout = "".join(o.text for o in out if o.output_type == "stream" and o.name == "stdout")
    assert Path(stdout.strip()) == Path(sys.executable)
    # Negative control for the stderr check: a warning is seen.
    assert "shown on stderr" in _stderr_text(nb)


def test_an_executed_copy_is_ignored_by_git_and_by_these_tests():
    import subprocess

    copy = NOTEBOOKS_DIR / "01-bias-before-batch-norm.nbconvert.ipynb"
    assert _executed_copy(copy) and not _executed_copy(NOTEBOOKS_DIR / NOTES[0])
    if (ROOT / ".git").exists():
        proc = subprocess.run(["git", "check-ignore", "-q", str(copy)], cwd=ROOT)
        assert proc.returncode == 0, "executed copies are not git-ignored"


def test_the_notebooks_extra_runs_nbconvert():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["notebooks"]
    names = {re.split(r"[<>=\[; ]", spec, maxsplit=1)[0].lower() for spec in extra}
    # `jupyter nbconvert --execute` needs the jupyter command and nbconvert
    assert {"nbconvert", "jupyter-core", "nbclient", "ipykernel"} <= names
