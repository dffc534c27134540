"""motionssl: GPU data pipelines for motion-focused self-supervised video learning (MoQuad, MCPNet, SimCLR).

One import root, three parts:

* :mod:`motionssl.pipelines` — the DALI pipelines and drop-in iterators (importable on
  their own: no models, no training code);
* :mod:`motionssl.models` — backbones, heads, losses, methods, optimisers, training and
  evaluation parts (pure PyTorch; DALI only where evaluation needs the pipelines);
* :mod:`motionssl.train`, :mod:`motionssl.evaluate` — the ``motionssl-train`` and
  ``motionssl-eval`` commands (``python train.py`` / ``python eval.py`` in a checkout);
  ``motionssl-prepare`` is :mod:`motionssl.pipelines.prepare`.

Importing ``motionssl`` loads nothing else; each part is imported when asked for.
"""
__version__ = "0.2.0"

__all__ = ["__version__"]
