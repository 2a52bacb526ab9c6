"""The package ships type information (py.typed, the compiled module's .pyi) that mypy
accepts on a small user script."""
import os
import subprocess
import sys

import pytest

import cgrad


def test_type_files_are_installed():
    folder = os.path.dirname(cgrad.__file__)
    assert os.path.exists(os.path.join(folder, "py.typed"))
    assert os.path.exists(os.path.join(folder, "_C.pyi"))


def _mypy(path, cwd):
    # run from an empty folder: check against the installed package, as a user's script is
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(path)],
                          capture_output=True, text=True, timeout=600, cwd=cwd)


def test_mypy_accepts_a_user_script_and_rejects_a_wrong_one(tmp_path):
    pytest.importorskip("mypy")
    out = _mypy(os.path.join(os.path.dirname(__file__), "typing", "user_script.py"), tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import cgrad\nn: int = cgrad.tensor([1.0]).shape\n")
    out = _mypy(wrong, tmp_path)
    assert out.returncode == 1 and "tuple[int, ...]" in out.stdout


def test_cgrad_sources_type_check():
    """mypy (with the checks of untyped function bodies) finds nothing in cgrad itself, so
    the types a user's checker sees are the ones the code keeps."""
    pytest.importorskip("mypy")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental",
                          "--config-file", "pyproject.toml", "cgrad"],
                         capture_output=True, text=True, timeout=600, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
