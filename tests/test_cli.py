import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from disentangle_eval.cli.main import main

from conftest import CONFORMANCE_DIR
from limits import default_sigint

FIXTURE = CONFORMANCE_DIR / "duplicated.npz"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "example.npz"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    if result.exit_code not in (0,):
        assert isinstance(result.exception, SystemExit), result.exception
    return result


def score(*args):
    return run("score", *args)


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(400, 3))
    latents = (factors + 0.1 * rng.standard_normal(factors.shape)).astype(np.float32)
    path = tmp_path / "small.npz"
    np.savez(path, latents=latents, factors=factors, factor_names=np.array(["a", "b", "c"]))
    return path, latents, factors


def test_table_output(small):
    path, _, _ = small
    result = score(path, "--factors", path, "--metrics", "infomec")
    assert result.exit_code == 0
    assert "InfoM" in result.output and "InfoE" in result.output and "InfoC" in result.output
    assert "NMI (rows = factors, columns = latents" in result.output
    assert "a " in result.output  # factor names on the table


def test_json_output_matches_library(small):
    from disentangle_eval import infomec

    path, latents, factors = small
    result = score(path, "--factors", path, "--metrics", "infomec", "--json", "--seed", "3")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert {"infomec", "settings", "environment", "inputs"} <= payload.keys()
    assert {"infom", "infoe", "infoc", "nmi", "active_latents"} <= payload["infomec"].keys()
    assert payload["settings"]["seed"] == 3
    assert payload["environment"]["device"] == "cpu" or payload["environment"]["device"].startswith("cuda")
    assert {"torch", "numpy", "scikit_learn", "python"} <= payload["environment"].keys()
    direct = infomec(latents, factors, seed=3)
    assert payload["infomec"]["infom"] == pytest.approx(direct.infom)
    assert payload["infomec"]["infoe"] == pytest.approx(direct.infoe)
    assert payload["inputs"]["factor_names"] == ["a", "b", "c"]


def test_conformance_fixture_through_cli():
    expected = json.loads((CONFORMANCE_DIR / "duplicated.expected.json").read_text())
    ref = expected["metrics"]["infomec_factorqvae"]["values"]
    result = score(FIXTURE, "--factors", FIXTURE, "--metrics", "infomec", "--json",
                   "--device", "cpu")
    assert result.exit_code == 0
    got = json.loads(result.stdout)["infomec"]
    for key in ("infom", "infoe", "infoc"):
        assert got[key] == pytest.approx(ref[key], abs=0.01)


def test_npy_inputs_and_keys(small, tmp_path):
    _, latents, factors = small
    np.save(tmp_path / "z.npy", latents)
    np.save(tmp_path / "y.npy", factors)
    assert score(tmp_path / "z.npy", "--factors", tmp_path / "y.npy", "--metrics",
                 "infomec").exit_code == 0
    np.savez(tmp_path / "custom.npz", codes=latents, labels=factors)
    result = score(tmp_path / "custom.npz", "--factors", tmp_path / "custom.npz",
                   "--latents-key", "codes", "--factors-key", "labels", "--metrics", "infomec")
    assert result.exit_code == 0
    # A single data array is taken whatever its name.
    np.savez(tmp_path / "only.npz", whatever=latents)
    assert score(tmp_path / "only.npz", "--factors", tmp_path / "y.npy", "--metrics",
                 "infomec").exit_code == 0


def test_out_dir_writes_and_never_overwrites(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "results"
    result = score(path, "--factors", path, "--metrics", "infomec", "--out", out)
    assert result.exit_code == 0
    assert {"metrics.json", "nmi.npy", "nmi.png"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.load(out / "nmi.npy").shape == (3, 3)
    assert np.allclose(np.load(out / "nmi.npy"), metrics["infomec"]["nmi"])
    assert (out / "nmi.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (out / "metrics.json").read_bytes()
    again = score(path, "--factors", path, "--metrics", "infomec", "--out", out, "--seed", "5")
    assert again.exit_code == 2
    assert "already holds metrics.json" in again.output and "--force" in again.output
    assert (out / "metrics.json").read_bytes() == before
    forced = score(path, "--factors", path, "--metrics", "infomec", "--out", out, "--seed", "5",
                   "--force")
    assert forced.exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["settings"]["seed"] == 5
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _write(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


GOOD_Z = np.random.default_rng(1).standard_normal((50, 3))
GOOD_Y = np.random.default_rng(1).integers(0, 3, size=(50, 2))


@pytest.mark.parametrize("case,latents,factors,message", [
    ("nan", np.where(np.arange(150).reshape(50, 3) == 7, np.nan, GOOD_Z), GOOD_Y, "NaN/Inf"),
    ("inf", np.where(np.arange(150).reshape(50, 3) == 7, np.inf, GOOD_Z), GOOD_Y, "NaN/Inf"),
    ("rows", GOOD_Z, GOOD_Y[:40], "same number of rows"),
    ("one_d", GOOD_Z[:, 0], GOOD_Y, "2-D"),
    ("noninteger", GOOD_Z, GOOD_Y + 0.5, "integer labels"),
    ("negative", GOOD_Z, GOOD_Y - 1, "non-negative"),
    ("constant", GOOD_Z, np.c_[GOOD_Y[:, 0], np.full(50, 2)], "single value"),
    ("one_sample", GOOD_Z[:1], GOOD_Y[:1], "at least 2 samples"),
    ("strings", np.array([["a"] * 3] * 50), GOOD_Y, "numeric"),
])
def test_bad_data_exit_1(tmp_path, case, latents, factors, message):
    path = _write(tmp_path, f"{case}.npz", latents=latents, factors=factors)
    result = score(path, "--factors", path, "--metrics", "infomec")
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1


def test_bad_files_exit_1(tmp_path):
    good = _write(tmp_path, "good.npz", latents=GOOD_Z, factors=GOOD_Y)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    text = tmp_path / "latents.txt"
    text.write_text("1 2 3\n")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:100])
    ragged = tmp_path / "ragged.npy"
    np.save(ragged, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    several = _write(tmp_path, "several.npz", a=GOOD_Z, b=GOOD_Z)
    cases = [(empty, "empty"), (text, "not a readable NumPy"), (truncated, "not a readable NumPy"),
             (ragged, "never unpickled"), (several, "choose one with --latents-key")]
    for path, message in cases:
        result = score(path, "--factors", good, "--metrics", "infomec")
        assert result.exit_code == 1, (path, result.output)
        assert message in result.output, (path, result.output)
    result = score(good, "--factors", good, "--latents-key", "missing", "--metrics", "infomec")
    assert result.exit_code == 1 and "no array named 'missing'" in result.output


def test_bad_usage_exit_2(tmp_path):
    good = _write(tmp_path, "good.npz", latents=GOOD_Z, factors=GOOD_Y)
    assert score(tmp_path / "missing.npz", "--factors", good).exit_code == 2
    assert score(good).exit_code == 2  # --factors is required
    assert score(good, "--factors", good, "--metrics", "bogus").exit_code == 2
    assert score(good, "--factors", good, "--n-neighbors", "0").exit_code == 2
    assert score(good, "--factors", good, "--train-fraction", "1.5").exit_code == 2
    if not __import__("torch").cuda.is_available():
        result = score(good, "--factors", good, "--device", "cuda", "--metrics", "infomec")
        assert result.exit_code == 2 and "CUDA is not available" in result.output
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = score(good, "--factors", good, "--metrics", "infomec", "--out", not_a_dir)
    assert result.exit_code == 2


def test_help_has_example_and_exit_codes():
    result = run("score", "--help")
    assert result.exit_code == 0
    assert "Example" in result.output and "Exit codes" in result.output


@pytest.mark.skipif(shutil.which("disentangle-eval") is None, reason="console script not installed")
def test_console_script_subprocess():
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(["disentangle-eval", "score", str(EXAMPLE), "--factors", str(EXAMPLE),
                           "--metrics", "infomec", "--json", "--device", "cpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert 0 <= payload["infomec"]["infom"] <= 1
    bad = subprocess.run(["disentangle-eval", "score", str(EXAMPLE), "--factors",
                          str(CONFORMANCE_DIR / "README.md")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("error: ") and "not a readable NumPy" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_dci_through_cli_matches_reference_and_writes_importance(tmp_path):
    fixture = CONFORMANCE_DIR / "identity.npz"
    expected = json.loads((CONFORMANCE_DIR / "identity.expected.json").read_text())
    ref = expected["metrics"]["dci_dlib_gbt"]["values"]
    out = tmp_path / "res"
    result = score(fixture, "--factors", fixture, "--json", "--split", "contiguous",
                   "--train-fraction", "0.9", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"dci", "infomec"} <= payload.keys()
    got = payload["dci"]
    for key in ("disentanglement", "completeness", "informativeness_train",
                "informativeness_test"):
        tol = 0.03 if key in ("disentanglement", "completeness") else 0.02
        assert got[key] == pytest.approx(ref[key], abs=tol), key
    importance = np.load(out / "importance.npy")
    assert importance.shape == (5, 5)
    np.testing.assert_allclose(importance.sum(axis=0), 1.0, atol=1e-9)
    np.testing.assert_allclose(importance, got["importance"])
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    assert payload["settings"]["dci"] == {"predictor": "gbt", "backend": "torch",
                                          "max_train_rows": 100000,
                                          "split": "contiguous", "train_fraction": 0.9}


def test_dci_table_and_options(small):
    path, _, _ = small
    result = score(path, "--factors", path, "--metrics", "dci", "--dci-predictor", "logistic",
                   "--split", "random", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "DCI disentanglement" in result.output
    assert "DCI importance (rows = latents, columns = factors)" in result.output
    assert "InfoM" not in result.output


def test_environment_versions_match_the_imported_packages():
    import scipy
    import sklearn

    from disentangle_eval.environment import environment_info

    info = environment_info("cpu")
    assert (info["scipy"], info["scikit_learn"]) == (scipy.__version__, sklearn.__version__)
    assert info["device"] == "cpu"


# --------------------------------------------------------------------------------------
# Strict JSON, option ranges, names shown safely
# --------------------------------------------------------------------------------------

def _strict_loads(text):
    def refuse(constant):
        raise AssertionError(f"non-strict JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_when_a_score_is_nan(small, tmp_path, monkeypatch):
    import dataclasses

    from disentangle_eval import _registry

    spec = _registry.METRICS["infomec"]

    def nan_infom(inputs, **options):
        return dataclasses.replace(spec.compute(inputs, **options), infom=float("nan"))

    monkeypatch.setitem(_registry.METRICS, "infomec", dataclasses.replace(spec, compute=nan_infom))
    path, _, _ = small
    out = tmp_path / "res"
    result = score(path, "--factors", path, "--metrics", "infomec", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert _strict_loads(result.stdout)["infomec"]["infom"] is None
    assert _strict_loads((out / "metrics.json").read_text())["infomec"]["infom"] is None


def test_strict_json_helpers_never_write_nan(tmp_path):
    from disentangle_eval._results import strict_json
    from disentangle_eval.io import write_json

    write_json(tmp_path / "a.json", {"x": np.float32("nan"), "y": [np.inf, 1.0],
                                     "z": np.array([-np.inf])})
    assert _strict_loads((tmp_path / "a.json").read_text()) == {"x": None, "y": [None, 1.0],
                                                                "z": [None]}
    with pytest.raises(TypeError):
        strict_json({"x": [object()]})


@pytest.mark.parametrize("args,message", [
    (("--seed", "-1"), "'--seed': -1 is not in the range 0<=x<=4294967295"),
    (("--seed", str(2**64)), "'--seed': 18446744073709551616 is not in the range"),
    (("--train-fraction", "nan"), "'--train-fraction': must be a finite number, got nan"),
])
@pytest.mark.parametrize("metric", ["dci", "infomec"])
def test_seed_and_fraction_ranges_are_usage_errors_for_every_metric(small, metric, args, message):
    path, _, _ = small
    result = score(path, "--factors", path, "--metrics", metric, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_largest_seed_is_accepted_by_every_metric(small):
    path, _, _ = small
    result = score(path, "--factors", path, "--metrics", "dci,infomec", "--json",
                   "--dci-predictor", "logistic", "--seed", str(2**32 - 1))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["seed"] == 2**32 - 1


HOSTILE_NAMES = np.array(["red\x1b[31m\x1b]0;pwned\x07", "two\nlines", "$\\frac{$", "ok"])


def test_factor_names_are_shown_escaped(tmp_path):
    rng = np.random.default_rng(2)
    factors = rng.integers(0, 3, size=(300, 4))
    latents = factors + 0.1 * rng.standard_normal(factors.shape)
    path = _write(tmp_path, "names.npz", latents=latents, factors=factors,
                  factor_names=HOSTILE_NAMES)
    out = tmp_path / "res"
    result = score(path, "--factors", path, "--metrics", "dci,infomec", "--dci-predictor",
                   "logistic", "--split", "contiguous", "--train-fraction", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "red\\x1b[31m\\x1b]0;pwned\\x07" in result.stdout
    assert "two\\nlines" in result.stdout
    # The report keeps the names as given (JSON escapes them); the heatmaps were drawn.
    assert json.loads((out / "metrics.json").read_text())["inputs"]["factor_names"] == \
        list(HOSTILE_NAMES)
    assert (out / "importance.png").exists() and (out / "nmi.png").exists()

    constant = _write(tmp_path, "constant.npz", latents=latents,
                      factors=np.c_[factors[:, :3], np.zeros(300, int)],
                      factor_names=np.array(["a", "b", "c", "bad\x1b[2J\nname"]))
    result = score(constant, "--factors", constant, "--metrics", "infomec")
    assert result.exit_code == 1
    assert result.output == ("error: factor 'bad\\x1b[2J\\nname' (column 3) has a single value "
                             "(0); a constant factor carries no information and cannot be "
                             "scored\n")


def test_wrong_number_of_factor_names_is_bad_data(tmp_path):
    path = _write(tmp_path, "n.npz", latents=GOOD_Z, factors=GOOD_Y,
                  factor_names=np.array(["a", "b", "c"]))
    result = score(path, "--factors", path, "--metrics", "infomec")
    assert result.exit_code == 1
    assert "factor_names has 3 entries but factors have 2 columns" in result.output


# --------------------------------------------------------------------------------------
# --out: all files at once, never mixed, never overwritten without --force
# --------------------------------------------------------------------------------------

def _staging_dirs(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial-" in p.name]


def test_out_refuses_foreign_files_even_with_force(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "res"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for extra in ((), ("--force",)):
        result = score(path, "--factors", path, "--metrics", "infomec", "--out", out, *extra)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: --out ") and "notes.txt" in result.output
        assert len(result.output.splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert _staging_dirs(tmp_path) == []


def test_out_is_not_the_current_folder(small, tmp_path, monkeypatch):
    path, _, _ = small
    monkeypatch.chdir(tmp_path)
    result = score(path, "--factors", path, "--metrics", "infomec", "--out", ".", "--force")
    assert result.exit_code == 2 and "current folder" in result.output


def test_out_replaces_an_empty_folder_and_keeps_its_permissions(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "res"
    out.mkdir(mode=0o750)
    os.chmod(out, 0o750)
    assert score(path, "--factors", path, "--metrics", "infomec", "--out", out).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "nmi.npy", "nmi.png"]
    assert out.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_out_files_get_the_umask(small, tmp_path, umask):
    path, _, _ = small
    out = tmp_path / "res"
    old = os.umask(umask)
    try:
        result = score(path, "--factors", path, "--metrics", "infomec", "--out", out)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in ("metrics.json", "nmi.npy", "nmi.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_unusable_out_is_reported_before_computing(small, tmp_path, monkeypatch):
    from disentangle_eval import _registry

    def never(*_args, **_kwargs):
        raise AssertionError("computed before checking --out")

    monkeypatch.setattr(_registry, "run_metric", never)
    path, _, _ = small
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = score(path, "--factors", path, "--metrics", "infomec", "--out", blocker / "res")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: --out ") and "cannot write there" in result.output
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            result = score(path, "--factors", path, "--metrics", "infomec", "--out",
                           locked / "res")
        finally:
            locked.chmod(0o700)
        assert result.exit_code == 2 and "Permission denied" in result.output


def _score_cmd(path, *args):
    return [sys.executable, "-m", "disentangle_eval.cli.main", "score", str(path), "--factors",
            str(path), "--metrics", "infomec", "--device", "cpu", *map(str, args)]


def test_two_runs_racing_for_one_out_folder(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "res"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    runs = [subprocess.Popen(_score_cmd(path, "--out", out, "--seed", seed), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)]
    outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in runs]
    codes = [code for code, _, _ in outcomes]
    assert sorted(codes) == [0, 2], outcomes
    winner = codes.index(0)
    _, _, loser_err = outcomes[1 - winner]
    assert loser_err.startswith("error: --out ") and len(loser_err.splitlines()) == 1
    assert "Traceback" not in loser_err
    # The folder holds one complete set, all of the winner's.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["seed"] == (1, 2)[winner]
    np.testing.assert_array_equal(np.load(out / "nmi.npy"), np.array(metrics["infomec"]["nmi"]))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "nmi.npy", "nmi.png"]
    assert _staging_dirs(tmp_path) == []


KILL_WHILE_WRITING = """
import os, signal, sys
import disentangle_eval.io as io
real = io.write_npy
def write_then_die(path, array):
    real(path, array)
    os.kill(os.getpid(), signal.SIGKILL)
io.write_npy = write_then_die
from disentangle_eval.cli.main import main
main(sys.argv[1:])
"""


def test_run_killed_while_writing_leaves_the_previous_results(small, tmp_path):
    path, _, _ = small
    out = tmp_path / "res"
    assert score(path, "--factors", path, "--metrics", "infomec", "--out", out,
                 "--seed", "1").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING,
                             *_score_cmd(path, "--out", out, "--seed", "2", "--force")[3:]],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # The killed run's staging folder is left beside the results...
    assert len(_staging_dirs(tmp_path)) == 1
    # ...and the next run neither trips on it nor leaves it behind.
    again = score(path, "--factors", path, "--metrics", "infomec", "--out", out, "--seed", "3",
                  "--force")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "metrics.json").read_text())["settings"]["seed"] == 3
    assert _staging_dirs(tmp_path) == []


def test_ctrl_c_exits_130_promptly_and_writes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    # ~1.8 s of work after the staging folder appears on an idle 2-core machine, so the
    # interrupt 0.3 s after it lands mid-work; with 50000 rows and 1 s an idle machine had
    # sometimes written the results already, and the signal hit the exiting process
    factors = rng.integers(0, 10, size=(150_000, 4))
    latents = np.c_[factors, rng.standard_normal((150_000, 6))] + 0.3 * rng.standard_normal(
        (150_000, 10))
    path = _write(tmp_path, "big.npz", latents=latents, factors=factors)
    out = tmp_path / "res"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen(_score_cmd(path, "--out", out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 120
        while not _staging_dirs(tmp_path):  # the staging folder exists: scoring starts
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr == "error: interrupted; nothing was written\n"
    assert stdout == ""
    assert waited < 10, waited
    assert not out.exists() and _staging_dirs(tmp_path) == []


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 7340032000 bytes"), "error: out of memory"),
    (ValueError("first line\nsecond line \x1b[31mred"), r"second line \x1b[31mred"),
])
def test_unexpected_errors_are_one_line(small, monkeypatch, error, expected):
    import disentangle_eval._registry as registry

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(registry, "run_metric", fail)
    path = small[0]
    result = CliRunner().invoke(main, ["score", str(path), "--factors", str(path),
                                       "--metrics", "infomec"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and expected in result.stderr
