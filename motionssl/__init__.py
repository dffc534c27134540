"""motionssl: GPU data pipelines for motion-focused self-supervised video learning (MoQuad, MCPNet, SimCLR).

One import root, two libraries and the application that uses them:

* :mod:`motionssl.pipelines` — the DALI pipelines and drop-in iterators (importable on
  their own: no models, no application);
* :mod:`motionssl.models` — backbones, heads, losses, methods, optimisers and the
  evaluation metrics and loops (pure PyTorch: no pipelines, no DALI);
* the application beside them: the commands :mod:`motionssl.train` (``motionssl-train``,
  ``python train.py``), :mod:`motionssl.evaluate` (``motionssl-eval``, ``python eval.py``),
  :mod:`motionssl.prepare` (``motionssl-prepare``), :mod:`motionssl.demo` and
  :mod:`motionssl.show` (``python -m``), and what only they use — the run's config,
  checkpoints and logs (:mod:`motionssl.training`), devices, ranks and signals
  (:mod:`motionssl.runtime`), the evaluation protocols (:mod:`motionssl.protocols`) and the
  commands' data and split rule (:mod:`motionssl.data`).

Neither library imports the application (``tests/test_layering.py``). Importing
``motionssl`` loads nothing else; each part is imported when asked for.
"""
__version__ = "0.2.0"

__all__ = ["__version__"]
