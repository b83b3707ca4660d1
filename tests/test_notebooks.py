"""Every notebook (jupytext py:percent) executes as a Jupyter notebook, headless, within its time
budget, with a per-cell time limit; it saves the figures it names, and its closing assertions
hold (a failing assertion is a failing cell).

CI executes each notebook once, as a notebook (jupytext -> nbformat -> nbclient on an ipykernel).
That the same file also runs as a plain `python notebooks/NN_*.py` script is checked cheaply in
CI (it compiles, and uses nothing that only IPython provides) and fully by the `slow` test,
which runs it (`pytest -m slow tests/test_notebooks.py`), so that CI does not pay twice.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normtheory.output_files import FIGURES_ENV, figures_dir

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
IDS = [p.stem for p in NOTEBOOKS]
TIME_LIMIT_S = 120  # issue 10: each notebook runs on CPU in under 2 minutes
CELL_TIME_LIMIT_S = 60  # nbclient's per-cell timeout: no single cell may take half the budget
FIGURE_NAME = re.compile(r"""["'](\d\d_[A-Za-z0-9_]+\.png)["']""")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Names that exist in an IPython kernel but not in a plain Python script.
IPYTHON_ONLY_NAMES = frozenset({"display", "get_ipython", "In", "Out", "_ih", "_oh", "exit_code"})


def _environment(figures: Path | None = None) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path}
    env.pop(FIGURES_ENV, None)
    if figures is not None:
        env[FIGURES_ENV] = str(figures)
    return env


def figures_named_in(source: str) -> set[str]:
    """The PNG files a notebook writes, as named in its source (NN_name.png)."""
    return set(FIGURE_NAME.findall(source))


def assert_figures_saved(notebook: Path, where: Path) -> None:
    expected = figures_named_in(notebook.read_text())
    assert expected, f"{notebook.name} names no figure"
    for name in sorted(expected):
        path = where / name
        assert path.is_file(), f"{notebook.name} did not save {name}"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{name} is not a PNG"


def ipython_only_uses(source: str, filename: str = "<notebook>") -> list[str]:
    """Why the source would not run as a plain script: a syntax error (top-level await, an
    uncommented magic) or a name that only IPython defines and the source never binds."""
    try:
        compile(source, filename, "exec")
    except SyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    tree = ast.parse(source)
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    bound |= {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
              for a in n.names}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    return [f"line {n.lineno}: {n.id}" for n in ast.walk(tree)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in IPYTHON_ONLY_NAMES and n.id not in bound]


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, [p.name for p in NOTEBOOKS]


def execute_as_notebook(notebook: Path, cwd: Path, cell_time_limit_s: float = CELL_TIME_LIMIT_S) -> float:
    """Convert with jupytext (py:percent, as paired by notebooks/jupytext.toml), execute every
    cell on a fresh ipykernel in `cwd`; returns the wall time. Raises nbclient's
    CellExecutionError (a cell raised: a failing assertion included) or CellTimeoutError."""
    import jupytext
    import nbclient

    nb = jupytext.read(notebook)
    client = nbclient.NotebookClient(nb, timeout=cell_time_limit_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    started = time.perf_counter()
    client.execute(env=_environment(cwd / "figures"))  # headless, the package importable, figures in cwd
    return time.perf_counter() - started


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_executes_as_a_notebook(notebook, tmp_path):
    pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    try:
        elapsed = execute_as_notebook(notebook, tmp_path)
    except nbclient.exceptions.CellTimeoutError as exc:
        pytest.fail(f"{notebook.name}: a cell ran past {CELL_TIME_LIMIT_S} s ({exc})", pytrace=False)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{notebook.name}: a cell failed\n{str(exc)[-3000:]}", pytrace=False)
    assert elapsed < TIME_LIMIT_S, f"{notebook.name} took {elapsed:.0f} s (limit {TIME_LIMIT_S} s)"
    assert_figures_saved(notebook, tmp_path / "figures")


def test_a_failing_closing_assertion_fails_the_notebook_run(tmp_path):
    """The same path must report a notebook whose story stopped being true, and one that hangs."""
    pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    broken = tmp_path / "99_broken.py"
    broken.write_text("# %%\nstory_holds = False\n\n# %%\nassert story_holds, 'the story changed'\n")
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="the story changed"):
        execute_as_notebook(broken, tmp_path)
    hanging = tmp_path / "98_hanging.py"
    hanging.write_text("# %%\nimport time\n\n# %%\ntime.sleep(30)\n")
    with pytest.raises(nbclient.exceptions.CellTimeoutError):
        execute_as_notebook(hanging, tmp_path, cell_time_limit_s=2)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_a_plain_python_script(notebook):
    """What can make a notebook that executes in Jupyter fail as a script: IPython syntax or
    IPython's built-in names. (`__file__` is the converse: scripts have it, kernels do not; a
    notebook using it fails the notebook test.)"""
    assert not ipython_only_uses(notebook.read_text(), notebook.name)


@pytest.mark.parametrize("snippet", ["display(1)\n", "x = get_ipython()\n", "await something()\n", "%time f()\n"])
def test_script_check_catches_ipython_only_code(snippet):
    assert ipython_only_uses("import math\n" + snippet)


def test_script_check_accepts_a_bound_name():
    assert not ipython_only_uses("from IPython.display import display\ndisplay(1)\n")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_figures_are_committed(notebook):
    """The README links the committed PNGs: every figure a notebook writes is in docs/figures."""
    missing = [n for n in sorted(figures_named_in(notebook.read_text())) if not (ROOT / "docs" / "figures" / n).is_file()]
    assert not missing, (f"run `{FIGURES_ENV}=docs/figures python {notebook.relative_to(ROOT)}` from the repository "
                         f"root and commit {missing}")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_writes_figures_where_it_is_told(notebook):
    """Issue 15: running a notebook overwrote the committed docs/figures. Every figure goes to
    FIGURES, which comes from output_files.figures_dir, and no path names docs/figures."""
    source = notebook.read_text()
    assert "FIGURES = figures_dir()" in source
    assert '"docs" / "figures"' not in source and '"docs/figures' not in source


def test_figures_go_to_the_chosen_folder_or_a_temporary_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(FIGURES_ENV, str(tmp_path / "mine"))
    assert figures_dir() == (tmp_path / "mine").resolve() and (tmp_path / "mine").is_dir()
    monkeypatch.delenv(FIGURES_ENV)
    chosen = figures_dir()
    assert chosen.is_dir() and ROOT not in chosen.parents and tmp_path not in chosen.parents
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]  # nothing written into the working directory


def test_notebooks_name_a_jupyter_kernel():
    """`jupytext --execute` looks for a kernel matching the notebook's metadata; without one it
    stopped with "No kernel found" (issue 15)."""
    jupytext = pytest.importorskip("jupytext")
    for notebook in NOTEBOOKS:
        assert jupytext.read(notebook).metadata.get("kernelspec", {}).get("name") == "python3", notebook.name


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_runs_as_a_script(notebook, tmp_path):
    result = subprocess.run([sys.executable, str(notebook)], cwd=tmp_path, env=_environment(tmp_path / "figures"),
                            capture_output=True, text=True, timeout=TIME_LIMIT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_figures_saved(notebook, tmp_path / "figures")
