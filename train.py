"""Train MoQuad, MCPNet or the SimCLR baseline: ``python train.py --pipeline moquad`` in a checkout.

The command is :mod:`motionssl.train` (installed as ``motionssl-train``); ``--help`` lists
its options.
"""
from motionssl.train import main

if __name__ == "__main__":
    main()
