"""How every command writes its files (docs/design.md, Safety): to a temporary name renamed into
place (a file a reader holds, or a crash mid-write, never sees half a new file), with the
permissions an ordinary open() gives, through a symlink rather than over it, into a device or a
fifo rather than over it, and never into a directory the user cannot write (refused before the
work). "Replaced, not rewritten" is observed through a hard link made before the run: a rename
leaves the link with the previous bytes, a write in place changes them."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from normtheory.cli import main

ROOT = Path(__file__).resolve().parents[1]
MEANFIELD_RECORD = ROOT / "tests" / "data" / "meanfield" / "xiong_d512.json"
PREVIOUS = b"the previous run's file"


def run_main(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def previous_file(path: Path) -> Path:
    """`path` holding PREVIOUS, and a hard link to it that a write in place would change."""
    path.write_bytes(PREVIOUS)
    alias = path.with_name(path.name + ".alias")
    os.link(path, alias)
    return alias


def assert_replaced(path: Path, alias: Path) -> None:
    assert alias.read_bytes() == PREVIOUS, f"{path.name} was rewritten in place, not replaced by a whole new file"
    assert path.read_bytes() != PREVIOUS, f"{path.name} was not written"
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".normtheory-")]
    assert not leftovers, leftovers


def x_file(folder: Path) -> Path:
    np.save(folder / "x.npy", np.ones((2, 4), dtype=np.float32))
    return folder / "x.npy"


def reference_args(folder: Path, out) -> list:
    return ["reference", "--op", "rmsnorm", "--format", "fp32", "--x", x_file(folder), "--out", out]


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_meanfield_json_and_plot_replace_the_previous_files(tmp_path, capsys):
    report, plot = tmp_path / "report.json", tmp_path / "plot.png"
    aliases = [previous_file(report), previous_file(plot)]
    code, out, err = run_main(capsys, "meanfield", "--from", MEANFIELD_RECORD, "--json", report, "--plot", plot)
    assert code in (0, 1), out + err
    assert_replaced(report, aliases[0])
    assert_replaced(plot, aliases[1])
    assert json.loads(report.read_text())["schema"].startswith("normtheory.meanfield/")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_meanfield_record_replaces_the_previous_file(tmp_path, capsys):
    record = tmp_path / "record.json"
    alias = previous_file(record)
    code, out, err = run_main(capsys, "meanfield", "--arch", "pre_ln", "--d", "4", "--L", "1", "--seeds", "2",
                              "--tokens", "2", "--record", record)
    assert code in (0, 1), out + err
    assert_replaced(record, alias)
    assert json.loads(record.read_text())[0]["archs"] == ["pre_ln"]


def test_a_plot_that_fails_half_way_leaves_the_previous_file(tmp_path, capsys, monkeypatch):
    """A crash while the plot is written (here: matplotlib writes some bytes, then fails) must
    leave the previous plot whole, and say so in one line."""
    from matplotlib.figure import Figure

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    plot = tmp_path / "plot.png"
    plot.write_bytes(PREVIOUS)
    code, out, err = run_main(capsys, "meanfield", "--from", MEANFIELD_RECORD, "--plot", plot)
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1, out + err
    assert plot.read_bytes() == PREVIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_equiv_json_replaces_the_previous_file(tmp_path, capsys):
    pytest.importorskip("torch")
    import torch

    threads = torch.get_num_threads()
    report = tmp_path / "equiv.json"
    alias = previous_file(report)
    try:
        code, out, err = run_main(capsys, "equiv", "--d", "8", "--layers", "1", "--heads", "2", "--samples", "8",
                                  "--steps", "0", "--target", "rmsnorm", "--json", report)
    finally:
        torch.set_num_threads(threads)  # equiv sets one thread on the CPU
    assert code == 0, out + err
    assert_replaced(report, alias)
    assert json.loads(report.read_text())["verdict"] == "HOLDS"


def test_report_plots_replace_the_previous_files(tmp_path, capsys):
    pytest.importorskip("torch")
    report, plot = tmp_path / "report.md", tmp_path / "report_ulp_histogram.png"
    aliases = [previous_file(report), previous_file(plot)]
    code, out, err = run_main(capsys, "certify", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "16",
                              "--budget", "24", "--no-search", "--no-backward", "--report", report)
    assert code == 0, out + err
    assert_replaced(report, aliases[0])
    assert_replaced(plot, aliases[1])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_new_reference_file_gets_the_umask_permissions(tmp_path, capsys, umask_022):
    """mkstemp creates 0600 files: renamed into place as they are, another user (a CI step)
    could not read the reference."""
    code, out, err = run_main(capsys, *reference_args(tmp_path, tmp_path / "ref.npz"))
    assert code == 0, out + err
    assert stat.S_IMODE((tmp_path / "ref.npz").stat().st_mode) == 0o644


def test_an_output_through_a_symlink_writes_its_target(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "results" / "ref.npz")
    code, out, err = run_main(capsys, *reference_args(tmp_path, link))
    assert code == 0, out + err
    assert link.is_symlink(), "the symlink was replaced by a file"
    with np.load(tmp_path / "results" / "ref.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "fp32"


def test_a_fifo_is_written_into_not_replaced(tmp_path, capsys):
    """Renaming over a special file replaces it (as root, `--out /dev/null` would replace
    /dev/null itself): such a target is written into. A fifo stands in for the device."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, out, err = run_main(capsys, *reference_args(tmp_path, fifo))
    reader.join(timeout=60)
    assert code == 0, out + err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the fifo was replaced by a regular file"
    assert received and received[0][:4] == b"PK\x03\x04"


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A directory that os.access reports unwritable (root may write anywhere, so a chmod
    would not stop this test's user)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    real_access = os.access

    def access(path, mode, **kwargs):
        if mode & os.W_OK and os.path.realpath(path) == str(folder.resolve()):
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return folder


def test_an_unwritable_output_directory_is_refused_before_the_input_is_read(tmp_path, capsys, read_only):
    args = reference_args(tmp_path, read_only / "ref.npz")
    args[args.index("--x") + 1] = tmp_path / "missing.npy"  # read first, this would be the error
    code, out, err = run_main(capsys, *args)
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1, out + err
    assert not (read_only / "ref.npz").exists()


def test_an_unwritable_directory_is_refused_before_measuring(tmp_path, capsys, read_only, monkeypatch):
    from normtheory.cli import meanfield

    def measure(*args, **kwargs):
        raise AssertionError("measured before the outputs were checked")

    monkeypatch.setattr(meanfield, "_measure", measure)
    code, out, err = run_main(capsys, "meanfield", "--json", read_only / "mf.json")
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1, out + err


def test_an_unwritable_sweep_directory_is_refused_before_the_grid_runs(tmp_path, capsys, read_only, monkeypatch):
    from normtheory.cli import sweep

    def run_grid(*args, **kwargs):
        raise AssertionError("the grid ran before sweep.json's directory was checked")

    monkeypatch.setattr(sweep, "run_grid", run_grid)
    grid = tmp_path / "grid.toml"
    grid.write_text('[[kernel]]\nname = "torch.rms_norm"\nop = "rmsnorm"\n\n[grid]\nformat = ["bf16"]\nd = [8]\n')
    code, out, err = run_main(capsys, "sweep", grid, "--out", read_only)
    assert code == 2 and "is not writable" in err and len(err.strip().splitlines()) == 1, out + err


def test_a_recording_leaves_the_users_other_files_alone(tmp_path, capsys):
    """The temporary file is a fresh name: a file the user keeps beside the recording (here the
    name REC.npz.tmp.npz, which a fixed temporary name would use) is neither overwritten nor
    renamed away."""
    pytest.importorskip("torch")
    neighbour = tmp_path / "rec.npz.tmp.npz"
    neighbour.write_bytes(PREVIOUS)
    code, out, err = run_main(capsys, "record", "torch.rms_norm", "--op", "rmsnorm", "--format", "bf16", "--d", "8",
                              "--rows-per-family", "1", "--no-backward", "--out", tmp_path / "rec.npz")
    assert code == 0, out + err
    assert neighbour.exists() and neighbour.read_bytes() == PREVIOUS
    with np.load(tmp_path / "rec.npz", allow_pickle=False) as data:
        assert "meta" in data.files


def test_a_replaced_file_keeps_its_permissions(tmp_path, capsys, umask_022):
    """As open(path, "w") would: a reference the user made private (0640) stays private."""
    out = tmp_path / "ref.npz"
    out.write_bytes(PREVIOUS)
    out.chmod(0o640)
    code, out_text, err = run_main(capsys, *reference_args(tmp_path, out))
    assert code == 0, out_text + err
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and out.read_bytes() != PREVIOUS
