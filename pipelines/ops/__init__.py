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

:mod:`.base` says what an op is: one :class:`~.base.Op` object with its parameters (drawn
from a random stream of its own), its DALI step, its NumPy twin and its slots in the fused
kernels' parameter pack. :mod:`.recipes` lists the ops of the two kinds of clip (RGB,
residual); :class:`~.base.ParamKeys`, the draws and the pack follow from those lists.
:mod:`.fused` runs a whole list as one Numba operator on the CPU (:mod:`._kernels`) and
refuses a list it does not implement. :mod:`.config` holds the dataclasses that configure
the ops. A new op is a module here (an ``Op`` subclass) and one line in a recipe's list
(and its lines in the fused kernels, or CPU graphs refuse it); the tests compare the graph
against the twin for every op and every recipe.
"""
