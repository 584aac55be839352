"""Synthetic run directories for testing report and compare without timing anything.

``make_run(dir)`` writes results.csv (through affbench.store.results.ResultsWriter), env.json and
verify.csv with a simple, known time model:

    t(impl, N, K, M) = overhead(impl) + flops / rate(impl, dtype, threads)

The defaults plant a crossover: ``numba-serial`` (0.5 µs overhead, slow rate) beats ``numpy``
(10 µs overhead, fast rate) at small batches and loses at large ones; ``crossover_batch``
gives the exact batch where the two model times are equal.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from affbench.store import results

#: impl -> (overhead seconds, float64 GFLOP/s at 1 thread, parallel: scales with threads)
MODEL: dict[str, tuple[float, float, bool]] = {
    "numpy": (10e-6, 35.0, True),
    "numba-serial": (0.5e-6, 4.0, False),
    "numba-prange": (5e-6, 10.0, True),
    "numba-tiled": (5e-6, 30.0, True),
    "naive": (2e-6, 0.01, False),
}


def flops(pass_: str, n: int, k: int, m: int) -> int:
    fwd, bwd = 2 * n * k * m + n * m, 4 * n * k * m + n * m
    return {"forward": fwd, "backward": bwd, "step": fwd + bwd}[pass_]


def model_time(impl: str, pass_: str, dtype: str, n: int, k: int, m: int, threads: int) -> float:
    overhead, rate, parallel = MODEL[impl]
    rate = rate * (2.0 if dtype == "float32" else 1.0) * (threads if parallel else 1)
    return overhead + flops(pass_, n, k, m) / (rate * 1e9)


def crossover_batch(impl: str, baseline: str, pass_: str, dtype: str, k: int, m: int, threads: int) -> float:
    """Batch N where the model times of impl and baseline are equal (linear in N)."""
    t = lambda name, n: model_time(name, pass_, dtype, n, k, m, threads)  # noqa: E731
    a_i, b_i = t(impl, 0), t(impl, 1) - t(impl, 0)
    a_b, b_b = t(baseline, 0), t(baseline, 1) - t(baseline, 0)
    return (a_b - a_i) / (b_i - b_b)


def _row(impl, pass_, dtype, n, k, m, threads, rng, *, noise, n_samples, scale, compile_s) -> dict[str, Any]:
    t = model_time(impl, pass_, dtype, n, k, m, threads) * scale
    samples = np.sort(t * rng.lognormal(0.0, noise, n_samples))
    f = flops(pass_, n, k, m)
    med = float(np.median(samples))
    q1, q3 = (float(v) for v in np.percentile(samples, [25, 75]))
    mean, std = float(samples.mean()), float(samples.std(ddof=1))
    return {
        "case_id": results.case_id(impl, pass_, dtype, n, k, m, threads),
        "impl": impl, "pass": pass_, "dtype": dtype, "batch": n, "in_features": k, "out_features": m,
        "threads": threads, "numba_threads": threads if impl.startswith("numba") else 1,
        "blas_threads": threads if impl == "numpy" else 1, "status": "ok", "compile_s": compile_s,
        "repeats": max(1, int(1e-3 / t)), "n_samples": n_samples, "median_s": med, "q1_s": q1, "q3_s": q3,
        "iqr_s": q3 - q1, "min_s": float(samples[0]), "mean_s": mean, "std_s": std, "cv": std / mean,
        "noisy": std / mean > 0.05, "flops": f, "gflops": f / med / 1e9, "peak_mem_bytes": 8 * n * m,
        "samples_s": [float(s) for s in samples], "error": "", "finished_at": "2024-01-01T00:00:00+00:00",
    }


def make_run(
    directory: str | Path,
    *,
    impls: Iterable[str] = ("numpy", "numba-serial", "numba-prange", "numba-tiled", "naive"),
    passes: Iterable[str] = ("forward", "backward"),
    dtypes: Iterable[str] = ("float32", "float64"),
    batches: Iterable[int] = (1, 4, 16, 64, 256),
    layers: Iterable[tuple[int, int]] = ((64, 32), (512, 256)),
    threads: Iterable[int] = (1, 2),
    seed: int = 0,
    noise: float = 0.02,
    n_samples: int = 15,
    slowdown: Mapping[str, float] | None = None,
    specials: bool = True,
    env: Mapping[str, Any] | None = None,
    verify: bool = True,
    serial_single_thread: bool = False,
) -> Path:
    """Write a synthetic run directory; return its path.

    ``slowdown`` multiplies the times of the named implementations (e.g. {"numba-tiled": 1.2}).
    ``specials`` adds one extrapolated, failed, timeout and skipped case and one noisy case.
    ``serial_single_thread`` times serial implementations at 1 thread only (as the run engine does).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    slowdown = dict(slowdown or {})
    impls, batches, layers, threads = list(impls), list(batches), list(layers), list(threads)
    compile_times = {"numpy": 2e-5, "naive": 1e-5, "numba-serial": 0.35, "numba-prange": 1.4, "numba-tiled": 2.1}
    with results.ResultsWriter(directory) as w:
        for impl in impls:
            for pass_ in passes:
                for dtype in dtypes:
                    c = compile_times.get(impl, 0.1) * (1.1 if dtype == "float32" else 1.0)
                    for k, m in layers:
                        for thr in threads:
                            if serial_single_thread and not MODEL.get(impl, (0, 0, True))[2] and thr != 1:
                                continue
                            for n in batches:
                                if impl == "naive" and specials and n * k * m > 2_000_000:
                                    t = model_time(impl, pass_, dtype, n, k, m, thr)
                                    f = flops(pass_, n, k, m)
                                    w.append({
                                        "case_id": results.case_id(impl, pass_, dtype, n, k, m, thr),
                                        "impl": impl, "pass": pass_, "dtype": dtype, "batch": n,
                                        "in_features": k, "out_features": m, "threads": thr,
                                        "status": "extrapolated", "median_s": t, "flops": f,
                                        "gflops": f / t / 1e9, "compile_s": c,
                                        "error": "predicted from 3 measured sizes (time ~ N*K*M)",
                                    })
                                    continue
                                row = _row(impl, pass_, dtype, n, k, m, thr, rng, noise=noise,
                                           n_samples=n_samples, scale=slowdown.get(impl, 1.0), compile_s=c)
                                w.append(row)
        if specials:
            base = dict(pass_="forward", dtype="float64", n=4096, k=4096, m=4096, threads=1)
            for impl, status, err in (("numba-tiled", "failed", "MemoryError: cannot allocate 128 MiB"),
                                      ("numba-prange", "timeout", "exceeded the 60 s case budget"),
                                      ("numba-serial", "skipped", "work above the serial limit")):
                w.append({"case_id": results.case_id(impl, "forward", "float64", 4096, 4096, 4096, 1),
                          "impl": impl, "pass": "forward", "dtype": "float64", "batch": 4096,
                          "in_features": 4096, "out_features": 4096, "threads": 1, "status": status,
                          "error": err})
            noisy = _row("numpy", "forward", "float64", 2048, 784, 50, 1, rng, noise=0.4, n_samples=n_samples,
                         scale=1.0, compile_s=2e-5)
            noisy["noisy"] = True
            w.append(noisy)
    full_env = default_env()
    full_env.update(env or {})
    results.write_env(directory, full_env)
    if verify:
        with open(directory / results.VERIFY_FILE, "w", newline="") as fh:
            cw = csv.DictWriter(fh, fieldnames=["impl", "dtype", "case", "quantity", "error", "tolerance", "passed", "detail"])
            cw.writeheader()
            for impl in impls:
                for dtype in dtypes:
                    tol = 1e-5 if dtype == "float32" else 1e-14
                    for q in ("y", "dx", "dW", "db"):
                        cw.writerow({"impl": impl, "dtype": dtype, "case": "N=7 K=13 M=11", "quantity": q,
                                     "error": tol / 20, "tolerance": tol, "passed": True, "detail": ""})
                    cw.writerow({"impl": impl, "dtype": dtype, "case": "N=7 K=13 M=11 int", "quantity": "exact",
                                 "error": math.nan, "tolerance": math.nan, "passed": True, "detail": ""})
    return directory


def default_env() -> dict[str, Any]:
    return {
        "run_id": "synthetic-run",
        "command": "python -m affbench run --preset synthetic",
        "started_at": "2024-01-01T00:00:00+00:00",
        "finished_at": "2024-01-01T00:10:00+00:00",
        "preset": "synthetic",
        "affbench_version": "0.1.0",
        "schema_version": results.SCHEMA_VERSION,
        "cpu": {"model": "AMD EPYC 7B13 (synthetic)", "logical_cores": 2, "physical_cores": 2, "avx2": True,
                "fma": True, "avx512": False, "nominal_ghz": 2.445},
        "peak_gflops": {"float32": 156.5, "float64": 78.2,
                        "how": "2 cores x 2.445 GHz x 2 FMA pipes x 256-bit (AVX2) x 2 FLOPs per FMA"},
        "os": "Linux-6.1-x86_64", "python": "3.11.2", "numpy": "2.4.0", "numba": "0.68.1", "llvmlite": "0.45.0",
        "blas": [{"user_api": "blas", "internal_api": "openblas", "version": "0.3.31", "num_threads": 2,
                  "threading_layer": "pthreads", "architecture": "Zen", "prefix": "libscipy_openblas"}],
        "numba_threading_layer": "omp", "numba_num_threads": 2,
        "env_vars": {"OMP_NUM_THREADS": None, "NUMBA_NUM_THREADS": "2"},
        "git_commit": "f935654",
        "noise_cv_threshold": 0.05,
        "load": {"calibration_start_s": 0.101, "calibration_end_s": 0.104, "loadavg_start": [0.1, 0.2, 0.3],
                 "loadavg_end": [1.4, 0.9, 0.5],
                 "warnings": ["load average rose to 1.4 during the run: another process shared the cores"]},
        "verify_failed": [],
    }
