"""What limits the peers' CPU threads: the measurements behind docs/peers.md.

    python docs/peer_threads.py            # ~2 minutes on 2 cores

Each configuration runs in a fresh process (JAX reads its settings once, when it creates its CPU
client) and loops a 1024x1024 float32 product for 1.5 s. It reports the CPU time the process
used per second of wall time ("cores used": 1.0 = one busy core), the threads that did the work
and the milliseconds per product. CPU time, unlike wall time, cannot be inflated by a neighbour
on a shared machine; it can only be lowered, so an upper bound (1 thread -> at most ~1 core)
is the robust reading. Every configuration runs twice, interleaved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = r"""
import json, os, sys, time
mode, setting = sys.argv[1], sys.argv[2]
full = os.sched_getaffinity(0)
before = set(os.listdir("/proc/self/task"))
if mode == "jax":
    if setting == "affinity-1":
        os.sched_setaffinity(0, set(sorted(full)[:1]))
    if setting == "xla-flags-after-import":
        import jax
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import numpy as np, jax
    jax.devices("cpu")
    if setting == "affinity-1":
        for tid in os.listdir("/proc/self/task"):
            os.sched_setaffinity(int(tid), full)
    a = jax.numpy.asarray(np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32))
    f = jax.jit(lambda a: a @ a)
    call = lambda: f(a).block_until_ready()
else:
    import affbench, numpy as np, numba, torch
    from affbench import threads
    n = int(setting)
    a = torch.randn(1024, 1024)
    ctx = threads.threads_for("torch", n)
    state = ctx.__enter__()
    call = lambda: torch.mm(a, a)

def ticks():
    out = {}
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/stat") as fh:
                p = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{t}/comm") as fh:
                out[t] = (fh.read().strip(), int(p[11]) + int(p[12]))
        except OSError:
            pass
    return out

call()
t0, c0, k0 = time.perf_counter(), sum(os.times()[:2]), ticks()
n_calls = 0
while time.perf_counter() - t0 < 1.5:
    call()
    n_calls += 1
wall = time.perf_counter() - t0
cpu = sum(os.times()[:2]) - c0
k1 = ticks()
hz = os.sysconf("SC_CLK_TCK")
busy = sorted(((k1[t][0], round((k1[t][1] - k0.get(t, ("", 0))[1]) / hz / wall, 2)) for t in k1
               if (k1[t][1] - k0.get(t, ("", 0))[1]) / hz > 0.1 * wall), key=lambda b: -b[1])
out = {"cores_used": round(cpu / wall, 2), "ms_per_call": round(1e3 * wall / n_calls, 1), "busy_threads": busy}
if mode == "jax":
    names = [v[0] for v in ticks().values()]
    out["xla_pool_threads"] = names.count("tf_XLAEigen")
else:
    out.update(torch_threads=torch.get_num_threads(), numba_threads=state.numba_threads,
               blas_threads=state.blas_threads)
print(json.dumps(out))
"""

CONFIGS = [
    ("jax", "default", {}),
    ("jax", "xla-flags", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}),
    ("jax", "xla-flags-eigen-only", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}),
    ("jax", "omp-1", {"OMP_NUM_THREADS": "1"}),
    ("jax", "xla-flags-after-import", {}),
    ("jax", "affinity-1", {}),
    ("torch", "1", {}),
    ("torch", "2", {}),
]


def main() -> int:
    rows: dict[str, list[dict]] = {}
    for _ in range(2):
        for mode, setting, env in CONFIGS:
            proc = subprocess.run([sys.executable, "-c", PROBE, mode, setting], capture_output=True, text=True,
                                  env={**os.environ, **env}, timeout=300)
            if proc.returncode != 0:
                print(f"{mode} {setting}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            rows.setdefault(f"{mode} {setting}", []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for key, got in rows.items():
        print(f"{key:<28} " + " | ".join(json.dumps(g) for g in got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
