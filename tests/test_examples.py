"""The examples run as a user runs them: copied to a folder of their own, against a regular install of the package.

One virtual environment per session: ``venv --system-site-packages`` (torch, DALI and NumPy come from this
interpreter, nothing is downloaded) and ``pip install --no-deps`` of the package (not editable). An editable
install visible through the system site-packages does not shadow it: the venv's site-packages precede them on
``sys.path`` and setuptools' editable finder is appended after the path finder; the fixture checks where
``motionssl`` imports from.
"""
import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = {"own_model.py": r"trained 3 steps of my own model on \d+ unlabelled videos",
            "own_planner.py": r"arrow of time: clips \(8, 3, 8, 56, 56\), reversed \["}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(python, env)``: the interpreter of a fresh virtual environment with the package installed, no PYTHONPATH."""
    root = tmp_path_factory.mktemp("installed")
    # The package's files copied out first: building in the checkout would leave build/ and egg-info there.
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    folders = {line.split(" = ")[1] for line in config["options"]["package_dir"].strip().splitlines()}
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), root / name)
    for folder in folders:
        shutil.copytree(os.path.join(ROOT, folder), root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                          str(root)], env=env, capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    where = subprocess.run([python, "-c", "import motionssl.pipelines as m; print(m.__file__)"], cwd=venv, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(site + os.sep), f"motionssl imported from {where}, not from the venv's {site}"
    return python, env


def run_example(installed, name, tmp_path, *args, launcher=()):
    """Run ``examples/<name>`` copied into ``tmp_path``, with the venv's interpreter; returns its stdout."""
    python, env = installed
    shutil.copy(os.path.join(ROOT, "examples", name), tmp_path / name)
    done = subprocess.run([python, *launcher, name, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_runs_and_says_what_it_did(installed, name, tmp_path):
    out = run_example(installed, name, tmp_path)
    assert re.search(EXAMPLES[name], out), out


@pytest.mark.slow
def test_two_ranks_under_torchrun_read_disjoint_shards(installed, tmp_path):
    out = run_example(installed, "torchrun_sharded.py", tmp_path, "--batch-size", "2", "--steps", "3",
                      launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    seen = {int(rank): [int(v) for v in videos.split(", ")]
            for rank, videos in re.findall(r"rank (\d) of 2: 3 steps .* videos \[([\d, ]+)\]", out)}
    assert sorted(seen) == [0, 1] and all(len(v) == 6 for v in seen.values()), out
    assert not set(seen[0]) & set(seen[1]), out


@pytest.mark.slow
@pytest.mark.skipif(not (importlib.util.find_spec("lightning") or importlib.util.find_spec("pytorch_lightning")),
                    reason="Lightning is not installed (pip install 'motionssl[lightning]')")
def test_the_lightning_datamodule_trains(installed, tmp_path):
    out = run_example(installed, "lightning_datamodule.py", tmp_path)
    assert re.search(r"lightning trained 3 steps of my own model on videos \[(\d+, ){23}\d+\]", out), out


def test_the_planner_example_stays_under_60_lines():
    with open(os.path.join(ROOT, "examples", "own_planner.py")) as f:
        assert len(f.read().splitlines()) < 60
