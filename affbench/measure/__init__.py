"""Measuring: how a case is timed and what the machine was doing meanwhile.

``timing`` (samples, rounds, the stopping rule), ``intervals`` (medians and ratios with their
95% intervals), ``threads`` (each backend's pool set in process), ``pool_env`` and
``malloc_env`` (environment set before NumPy loads), ``load`` (other processes' CPU use),
``environment`` (what env.json records) and ``asm`` (reading the kernels' machine code).
Imports only the layer's contract and registry below it.
"""
