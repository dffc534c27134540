"""Benchmarks of the data pipelines: data generation, throughput, data stall, the GPU acceptance check.

Run them as modules from the repository root::

    python -m benchmarks.make_data              # benchmarks/data/{vp9,h264}/list.txt
    python -m benchmarks.throughput --device cpu
    python -m benchmarks.data_stall --device cpu --pipeline simclr

``benchmarks/RESULTS.md`` holds the measured figures, the commands and the hardware.
"""
