"""A normal (non-editable) install works: the wheel carries every Hydra config, and every console script
runs from a fresh virtualenv, away from this checkout."""

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    "pyproject.toml",
    "README.md",
    "dreamx_env",
    "world_model",
    "agents",
    "dreamx_bench",
    "examples",
    "configs",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, timeout=30)
    if out.returncode:
        pytest.skip("needs a git checkout to know which files a release holds")
    return [p for p in out.stdout.decode().split("\0") if p and (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of its tracked files (the checkout stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _tracked(*SOURCES):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes((ROOT / rel).read_bytes())
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src)]
    proc = subprocess.run([*cmd, "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (tmp / "dist").glob("*.whl")
    return path


def test_the_wheel_ships_every_hydra_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p for p in _tracked("configs") if p.endswith(".yaml")}
    assert configs and configs <= names, sorted(configs - names)


def test_every_cli_runs_from_a_fresh_venv(wheel, tmp_path):
    """``--help`` of each ``[project.scripts]`` entry (a Hydra CLI composes its config for it, so a missing
    config fails here), then the demo on the constant backend, all from a venv whose copy of the package
    is the wheel's (system site-packages provide the dependencies)."""
    venv = tmp_path / "venv"
    make_venv = [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)]
    subprocess.run(make_venv, check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
    proc = subprocess.run(
        [*install, "--force-reinstall", str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import agents, configs; print(agents.__file__, *configs.__path__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(p.startswith(str(venv)) for p in where), where  # not this checkout's editable install
    scripts = configparser.ConfigParser()  # the wheel's console scripts: pyproject's [project.scripts]
    with zipfile.ZipFile(wheel) as z:
        scripts.read_string(
            z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
        )
    hydra_clis = {"dreamx-serve", "dreamx-generate", "dreamx-train", "dreamx-plan", "dreamx-train-agent"}
    assert hydra_clis | {"dreamx-eval-agent", "dreamx-demo"} <= set(scripts["console_scripts"])
    for name in scripts["console_scripts"]:
        help_cmd = [venv / "bin" / name, "--help"]
        proc = subprocess.run(help_cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
        assert proc.returncode == 0 and proc.stdout.strip(), f"{name} --help:\n{proc.stderr[-3000:]}"
    demo = [venv / "bin" / "dreamx-demo", "--backend", "constant", "--out", str(tmp_path / "tour")]
    proc = subprocess.run(demo, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "tour.gif").is_file() and (tmp_path / "tour.png").is_file()
