"""Evaluate a pre-trained backbone: ``python eval.py {retrieval,linear,finetune} ...`` in a checkout.

The command is :mod:`motionssl.evaluate` (installed as ``motionssl-eval``); ``--help`` lists
its options.
"""
from motionssl.evaluate import main

if __name__ == "__main__":
    main()
