"""The embedded demo dataset: deterministic, balanced, motion-defined, readable by the pipelines."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from motionssl.pipelines import demo, files
from motionssl.pipelines.decoders import read_window
from motionssl.pipelines.index import load_index


def test_render_is_deterministic_and_moves():
    a = demo.render(0, np.random.default_rng([0, 5]))
    b = demo.render(0, np.random.default_rng([0, 5]))
    c = demo.render(0, np.random.default_rng([0, 6]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (32, 64, 64, 3) and a.dtype == np.uint8
    for label in range(len(demo.CLASSES)):
        frames = demo.render(label, np.random.default_rng([1, label])).astype(float)
        assert np.abs(frames[-1] - frames[0]).mean() > 2.0, demo.CLASSES[label]  # something moves


def test_generate_is_deterministic_balanced_and_indexable(tmp_path):
    roots = [demo.generate(str(tmp_path / f"d{i}"), seed=0, per_class=3, test_per_class=1, workers=2 - i)
             for i in range(2)]
    digests = []
    for root in roots:
        h = hashlib.sha1()
        for split in ("train", "test", "all"):
            h.update(open(f"{root}/{split}.txt", "rb").read())
        for line in open(f"{root}/all.txt"):
            h.update(read_window(f"{root}/{line.split()[0]}", 0, 32).tobytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]  # same seed, same frames, whatever the worker count
    train = load_index(roots[0], split="train")
    test = load_index(roots[0], split="test")
    k = len(demo.CLASSES)
    assert np.bincount(train.labels, minlength=k).tolist() == [2] * k
    assert np.bincount(test.labels, minlength=k).tolist() == [1] * k
    assert train.classes == list(demo.CLASSES) and set(train.num_frames.tolist()) == {32}
    assert not set(train.paths) & set(test.paths)
    again = demo.generate(roots[0], seed=0, per_class=3, test_per_class=1)  # complete: returned as is
    assert again == roots[0]
    with pytest.raises(files.FolderError, match="other settings"):  # never mixed with, nor replaced
        demo.generate(roots[0], seed=0)


@pytest.mark.slow
def test_import_pipelines_does_not_import_models_or_torch_training():
    code = ("import sys, motionssl.pipelines, motionssl.pipelines.demo, motionssl.pipelines.ops.recipes; "
            "assert 'motionssl.models' not in sys.modules, 'models imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
