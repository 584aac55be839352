"""Running sweeps: what a run is made of and how it is carried out.

``sweep`` (axes, presets, cases), ``calls`` (what one case runs, under which threads and
timeout), ``warmup`` (first calls timed apart: compile), ``runner`` (verify, compile, time,
write results), ``worker`` (rounds in fresh processes), ``rundir`` (run directories, locks,
resume) and ``targets`` (the numba-tiled targets and how a measurement is judged).
Builds on ``measure/``, ``verify`` and ``store/``.
"""
