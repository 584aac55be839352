"""Fuzz one implementation in a child process, so that a crash in a Numba kernel (which does
no bounds checks) fails one test instead of killing the pytest run.

    python tests/_fuzz_worker.py IMPL N_KERNEL_CASES N_AFFINE_CASES

Exit status 0 and a last stdout line of JSON ({"impl", "kernel", "affine"}: outcome counts)
when every case held; hypothesis's falsifying example on stderr and status 1 when one did
not; a negative status (-11) on a segfault.
"""

from __future__ import annotations

import collections
import faulthandler
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
faulthandler.enable()

import _support  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from affbench import registry  # noqa: E402


def main(argv: list[str]) -> int:
    name, n_kernel, n_affine = argv[0], int(argv[1]), int(argv[2])
    impl = registry.get(name)
    counts = {"kernel": collections.Counter(), "affine": collections.Counter()}
    common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))

    @settings(max_examples=n_kernel, **common)
    @given(_support.kernel_cases())
    def kernel(case):
        counts["kernel"][_support.run_kernel_case(impl, case)] += 1

    @settings(max_examples=n_affine, **common)
    @given(_support.affine_cases())
    def affine(case):
        counts["affine"][_support.run_affine_case(name, case)] += 1

    if n_kernel:
        kernel()
    if n_affine:
        affine()
    print(json.dumps({"impl": name, **{k: dict(v) for k, v in counts.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
