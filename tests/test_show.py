"""`python -m motionssl.show` writes a picture of one batch for every pipeline."""
import numpy as np
import pytest
from PIL import Image

from motionssl import show
from motionssl.pipelines import demo


@pytest.mark.slow
@pytest.mark.parametrize("pipeline,rows", [("moquad", 4), ("mcpnet", 3), ("simclr", 2)])
def test_show_writes_a_grid(tmp_path, pipeline, rows):
    data = demo.generate(str(tmp_path / "demo"), per_class=3, test_per_class=1, workers=1)
    out = str(tmp_path / f"{pipeline}.png")
    show.main(["--pipeline", pipeline, "--data", data, "--split", "train", "--out", out, "--samples", "2"])
    image = Image.open(out)
    width, height = image.size
    assert width > 300 and height > 2 * rows * 50  # two samples × rows of 8 frames
    assert len(np.unique(np.asarray(image.convert("L")))) > 50  # real content, not a blank picture


def test_show_defaults_to_the_demo_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert show.main(["--pipeline", "mcpnet"]) == "batch.png"
    assert Image.open(tmp_path / "batch.png").size[0] > 300
