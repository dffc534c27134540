"""One import root: the toolkit installs as ``motionssl`` and lives beside a project's own ``models``/``pipelines``."""
import configparser
import importlib.metadata
import os
import subprocess
import sys

import pytest

import motionssl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_project_with_its_own_models_and_pipelines_imports_both(tmp_path):
    for name in ("models", "pipelines"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("WHO = 'the project'\n")
    code = ("import models, pipelines, motionssl.models, motionssl.pipelines, motionssl.models.losses; "
            "print(models.WHO, pipelines.WHO); print(motionssl.pipelines.__file__); print(motionssl.models.__file__)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    mine, pipelines_file, models_file = run.stdout.splitlines()
    assert mine == "the project the project"
    assert pipelines_file.startswith(ROOT) and models_file.startswith(ROOT)  # the toolkit's, not the project's


def test_one_top_level_name_and_a_version():
    dist = importlib.metadata.distribution("motionssl")
    assert (dist.read_text("top_level.txt") or "").split() == ["motionssl"]
    assert dist.version == motionssl.__version__
    scripts = {e.name for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"motionssl-train", "motionssl-eval", "motionssl-prepare"}


def test_every_package_folder_is_installed():
    """A sub-package left out of setup.cfg would import in a checkout and be missing from a regular install."""
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    mapping = dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines())
    listed = set(config["options"]["packages"].split())
    found = set()
    for package, folder in mapping.items():
        for path, _, names in os.walk(os.path.join(ROOT, folder)):
            if "__init__.py" in names and "__pycache__" not in path:
                rel = os.path.relpath(path, os.path.join(ROOT, folder))
                found.add(package if rel == "." else f"{package}.{rel.replace(os.sep, '.')}")
    assert found == listed


def test_the_shipped_configurations_are_found_by_name(tmp_path, monkeypatch):
    from motionssl import configs

    monkeypatch.chdir(tmp_path)  # anywhere but a checkout
    assert "demo/moquad.yaml" in configs.shipped() and "moquad_r3d18.yaml" in configs.shipped()
    for name in ("configs/moquad_r3d18.yaml", "moquad_r3d18.yaml", "moquad_r3d18"):
        assert configs.resolve(name) == os.path.join(configs.root(), "moquad_r3d18.yaml")
    assert configs.resolve("nowhere.yaml") == "nowhere.yaml"


def test_nothing_imports_the_bare_names():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                            cwd=ROOT, capture_output=True, text=True).stdout.split()
    bare = []
    for path in (p for p in listed if os.path.exists(os.path.join(ROOT, p))):
        with open(os.path.join(ROOT, path)) as f:
            for number, line in enumerate(f, 1):
                stripped = line.strip()
                if stripped.startswith(("from pipelines", "import pipelines", "from models", "import models")):
                    bare.append(f"{path}:{number}")
    assert not [b for b in bare if not b.startswith("tests/test_packaging.py")], bare


def test_the_models_and_the_public_api_import_without_dali():
    """``import motionssl.models`` (and naming the pipelines' API) must not pay for DALI's import."""
    code = ("import sys, motionssl.models, motionssl.models.methods, motionssl.training, motionssl.pipelines\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('nvidia.dali') or m == 'av')\n"
            "print(','.join(loaded))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"loaded on import: {done.stdout.strip()}"


@pytest.mark.parametrize("script", ["motionssl-train", "motionssl-eval", "motionssl-prepare"])
def test_a_console_script_that_succeeds_exits_with_status_0(script, monkeypatch):
    """The commands' ``main`` returns what it made; handed to ``sys.exit`` that is status 1 (and a printed dict)."""
    dist = importlib.metadata.distribution("motionssl")
    entry = next(e for e in dist.entry_points if e.group == "console_scripts" and e.name == script)
    module = importlib.import_module(entry.module)
    monkeypatch.setattr(module, "main", lambda *a, **k: {"made": "something"})
    assert entry.load()() is None
