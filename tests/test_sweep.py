"""affbench.engine.sweep: expanding axes into cases, the option parsers, TOML configs and presets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from affbench import registry
from affbench.engine import runner
from affbench.engine.sweep import (
    PRESETS,
    Case,
    Sweep,
    expand,
    load_config,
    parse_layer,
    parse_positive_int,
    parse_threads,
    preset,
    resolve_threads,
    uses_threads,
)
from affbench.errors import UsageError
from affbench.measure.threads import PEER_BACKENDS, backend_of

FAKE_IMPLS = {
    "py": SimpleNamespace(name="py", backend="python"),
    "blas": SimpleNamespace(name="blas", backend="blas"),
    "jit-par": SimpleNamespace(name="jit-par", backend="numba", compile_options={"parallel": True}),
    "jit-serial": SimpleNamespace(name="jit-serial", backend="numba", compile_options={}),
}


# --------------------------------------------------------------------------- expand
def test_single_threaded_impls_only_at_one_thread():
    sweep = Sweep(passes=("forward",), dtypes=("float64",), batches=(4,), layers=((8, 4),), threads=(1, 2, "all"))
    cases = expand(sweep, FAKE_IMPLS, max_threads=4)
    by_impl: dict[str, list[int]] = {}
    for c in cases:
        by_impl.setdefault(c.impl, []).append(c.threads)
    assert by_impl == {"py": [1], "blas": [1, 2, 4], "jit-par": [1, 2, 4], "jit-serial": [1]}


def test_uses_threads_for_the_builtins():
    assert not uses_threads(registry.get("naive"))
    assert uses_threads(registry.get("numpy"))
    assert not uses_threads(registry.get("numba-serial"))
    assert uses_threads(registry.get("numba-prange"))


def test_all_and_duplicate_thread_counts_collapse():
    assert resolve_threads((2, "all", 1, 2), 2) == (1, 2)
    sweep = Sweep(passes=("forward",), dtypes=("float64",), batches=(1,), layers=((3, 3),), threads=(2, "all"))
    assert [c.threads for c in expand(sweep, {"blas": FAKE_IMPLS["blas"]}, 2)] == [2]


def test_expand_smallest_work_first_and_every_combination_once():
    sweep = Sweep(passes=("forward", "step"), dtypes=("float32", "float64"), batches=(100, 1, 16),
                  layers=((784, 50), (50, 10), (256, 256)), threads=(1, "all"))
    cases = expand(sweep, FAKE_IMPLS, max_threads=2)
    work = [c.batch * c.in_features * c.out_features for c in cases]
    assert work == sorted(work)
    assert len(set(cases)) == len(cases)
    # 9 sizes x 2 dtypes x 2 passes x (1 + 2 + 2 + 1 thread settings)
    assert len(cases) == 9 * 2 * 2 * 6
    assert {(c.batch, c.in_features, c.out_features) for c in cases} == {
        (n, k, m) for n in (100, 1, 16) for k, m in ((784, 50), (50, 10), (256, 256))}


def test_identical_work_cases_are_adjacent_and_grouped():
    sweep = Sweep(passes=("forward", "backward"), dtypes=("float32", "float64"), batches=(1, 8),
                  layers=((16, 8), (8, 16)), threads=(1, "all"))
    cases = expand(sweep, FAKE_IMPLS, max_threads=2)
    keys = [c.size_key for c in cases]
    blocks = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    assert len(blocks) == len(set(keys))  # each size_key forms one contiguous block
    groups = runner._groups(cases)
    assert len(groups) == len(set(keys))
    for g in groups:
        assert len({c.size_key for c in g}) == 1
        assert {c.impl for c in g} == set(FAKE_IMPLS)  # every implementation side by side
        assert len(g) == 6
    assert [c for g in groups for c in g] == cases  # grouping keeps the smallest-first order


def test_case_id_and_flops():
    c = Case("numpy", "forward", "float64", 4, 8, 3, 2)
    assert c.case_id == "numpy|forward|float64|4|8|3|2"
    assert c.flops == 2 * 4 * 8 * 3 + 4 * 3
    assert Case("numpy", "backward", "float64", 4, 8, 3, 2).flops == 4 * 4 * 8 * 3 + 4 * 3
    assert c.size_key == ("forward", "float64", 4, 8, 3)
    assert "N=4" in c.label() and "8->3" in c.label()


# --------------------------------------------------------------------------- parsers
@pytest.mark.parametrize("text, expected", [("784:50", (784, 50)), ("1:1", (1, 1)), (" 3:4 ", (3, 4))])
def test_parse_layer_good(text, expected):
    assert parse_layer(text) == expected


@pytest.mark.parametrize("text", ["784x50", "784:", ":50", "0:5", "5:0", "-1:5", "a:b", "1:2:3", "", "784", "1.5:2"])
def test_parse_layer_bad(text):
    with pytest.raises(UsageError) as err:
        parse_layer(text)
    msg = str(err.value)
    assert msg.startswith("--layer:") and "\n" not in msg
    assert "K:M" in msg or "positive" in msg


@pytest.mark.parametrize("value, expected", [(1, 1), ("7", 7), (" 12 ", 12), (1024, 1024)])
def test_parse_positive_int_good(value, expected):
    assert parse_positive_int("--batch", value) == expected


@pytest.mark.parametrize("value", [0, "0", -1, "-1", "1.5", 1.5, "abc", "", True, None, "1e3", [1]])
def test_parse_positive_int_bad(value):
    with pytest.raises(UsageError, match=r"^--batch: .* is not a positive integer$"):
        parse_positive_int("--batch", value)


def test_parse_threads():
    assert parse_threads("all", 2) == "all"
    assert parse_threads("1", 2) == 1
    assert parse_threads(2, 2) == 2
    with pytest.raises(UsageError, match=r"--threads: 3 is above the 2 threads.*1\.\.2 or 'all'"):
        parse_threads("3", 2)
    for bad in ("0", "-2", "two", "1.0"):
        with pytest.raises(UsageError, match="^--threads:"):
            parse_threads(bad, 2)


# --------------------------------------------------------------------------- config files
def test_load_config_good(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('preset = "quick"\nimpl = ["numpy"]\nbatch = [1, 4]\nlayer = ["8:4"]\nbudget = 0.01\n')
    assert load_config(path) == {"preset": "quick", "impl": ["numpy"], "batch": [1, 4], "layer": ["8:4"],
                                 "budget": 0.01}


def test_load_config_missing_file(tmp_path):
    with pytest.raises(UsageError, match=r"^--config: .*nope\.toml: no such file$"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("text", ["batch = [1, 2\n", "impl = numpy\n", "= 3\n", "\x00\x01"])
def test_load_config_bad_toml(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=r"^--config: .*bad\.toml: cannot read it as TOML") as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_load_config_directory(tmp_path):
    with pytest.raises(UsageError, match="^--config:"):
        load_config(tmp_path)


def test_load_config_unknown_key_lists_the_accepted_ones(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('batches = [1]\nimpl = ["numpy"]\n')
    with pytest.raises(UsageError) as err:
        load_config(path)
    msg = str(err.value)
    assert "unknown key(s) batches" in msg
    for key in ("batch", "layer", "impl", "threads", "budget", "case_timeout"):
        assert key in msg.split("accepted:")[1]


# --------------------------------------------------------------------------- presets
def test_presets_exist_and_are_consistent():
    assert {"quick", "default", "full"} <= set(PRESETS)
    for name, (description, sweep) in PRESETS.items():
        assert description
        assert preset(name) is sweep
        assert sweep.plan.min_samples <= sweep.plan.max_samples
        assert sweep.plan.budget_s > 0 and sweep.max_case_s > 0
        assert all(b >= 1 for b in sweep.batches) and all(k >= 1 and m >= 1 for k, m in sweep.layers)
        assert Sweep.from_dict(sweep.to_dict()) == sweep  # run.json round trip (resume relies on it)


def test_unknown_preset_names_the_accepted_ones():
    with pytest.raises(UsageError, match=r"^--preset: unknown preset 'huge'; accepted: quick, default, full"):
        preset("huge")


def test_quick_preset_really_is_small():
    """The CI smoke test: bounded work per case and a sampling budget of seconds in all. Counted
    over the built-in implementations: the optional peers (torch, torch-ops, jax) add their own
    cases when installed (tests/test_peers.py runs them on a smaller sweep)."""
    sweep = preset("quick")
    impls = {n: registry.get(n) for n in registry.names() if backend_of(registry.get(n)) not in PEER_BACKENDS}
    cases = expand(sweep, impls, max_threads=2)
    assert len(cases) <= 200
    assert sweep.max_case_s <= 0.5  # anything predicted slower (naive at 100x256x256) is extrapolated
    assert sweep.plan.budget_s * len(cases) <= 30.0  # total sampling budget: half the minute
    assert sweep.plan.max_samples <= 60 and sweep.plan.min_samples <= 10
    assert max(c.flops for c in cases) <= 50e6  # a step at 100x256x256; ~20 ms even at 2 GFLOP/s
    assert max(k * m for k, m in sweep.layers) <= 256 * 256
    # the largest case of every implementation that is measured, not extrapolated, is tiny next to the
    # default preset's
    default = expand(preset("default"), impls, max_threads=2)
    assert max(c.flops for c in cases) * 10 < max(c.flops for c in default)


