"""Clip ops: each op with its per-sample draw, its DALI operator and its NumPy twin, side by side.

=============  ==========================================  =============================================
module         op                                          DALI operators (GPU; CPU without Numba)
=============  ==========================================  =============================================
``cut``        speed-dilated and residual frame indices     ``sequence_rearrange``
``crop``       random resized crop + flip + resize          ``resize`` (ROI)
``colour``     colour jitter, grayscale                     ``color_twist``
``blend``      RAD mosaics (inter / intra), BE              ``resize``, ``cat``, ``permute_batch``, arithmetic
``residual``   ``|F_i − F_{i+t·s}|`` (MCPNet Eq. 2)         ``sequence_rearrange``, ``-``, ``abs``
``normalise``  ``(x/255 − mean)/std``, ``FHWC → CFHW``      ``crop_mirror_normalize``
=============  ==========================================  =============================================

:mod:`.recipes` builds the two kinds of clip (RGB, residual) as fixed op lists; :mod:`.fused`
runs a whole list as one Numba operator on the CPU (:mod:`._kernels`) and refuses a list it
does not implement. :mod:`.config` holds the dataclasses that configure the ops. A new op
is a module here (draw, graph op, ``*_reference`` twin), its name in a recipe's list, its
step in the recipe's three builders and its lines in the fused kernel; the tests compare
the graph against the twin for every op and every recipe.
"""
