"""Presets as what produced Table 1, the cpu rule, --steps stretching the schedules."""
import csv
import math

import pytest
import torch
from click.testing import CliRunner

from disentangle_eval.cli.train_reference import main
from reference_models.config import with_overrides
from reference_models.models import build_model
from reference_models.presets import (
    CPU_SWEEP_FACTOR, CPU_WEIGHT_SCALE, PAPER_WEIGHTS, get_preset, stretch_schedules,
)
from reference_models.training.loop import train
from reference_models.training.run_folder import build_spec

WEIGHTED = ("betavae", "factorvae", "dvae", "qvae", "factordvae", "factorqvae")


def _spec(model, sets=None, *, steps=None, preset="cpu", dataset="toyshapes"):
    """``train-reference MODEL --dataset D --preset P [--steps N] [--set k=v ...]``."""
    return build_spec(model, dataset, preset=preset, data_dir=None, steps=steps,
                      batch_size=None, seed=None,
                      overrides={k: str(v) for k, v in (sets or {}).items()})


# -- the cpu preset's regulariser weights (docs/presets.md) -------------------------------

def test_cpu_weight_scale_is_the_rms_error_ratio_of_the_autoencoder():
    assert CPU_WEIGHT_SCALE == math.sqrt(82.5 / 0.3)
    assert 16.5 < CPU_WEIGHT_SCALE < 16.7


@pytest.mark.parametrize("model", WEIGHTED)
@pytest.mark.parametrize("preset", ["cpu", "smoke"])
def test_cpu_preset_scales_every_regulariser_weight_alike(model, preset):
    # Table 3's proportions between models and between beta and gamma stay.
    cpu, _ = get_preset(model, "toyshapes", preset)
    paper = PAPER_WEIGHTS[(model, "shapes3d")]
    for field in ("beta", "gamma"):
        if field in paper:
            ratio = getattr(cpu, field) / paper[field]
            assert ratio == pytest.approx(CPU_WEIGHT_SCALE * CPU_SWEEP_FACTOR[field]), field
        else:
            assert getattr(cpu, field) == 0.0


@pytest.mark.parametrize("model", ["bioae", "qlae"])
def test_weights_that_do_not_pull_against_the_reconstruction_stay(model):
    cpu, _ = get_preset(model, "toyshapes", "cpu")
    for field, value in PAPER_WEIGHTS[(model, "shapes3d")].items():
        assert getattr(cpu, field) == value


# -- what produced Table 1, and the other choice one --set away -----------------------------

@pytest.mark.parametrize("preset, dataset", [("paper", "shapes3d"), ("cpu", "toyshapes")])
def test_table_1_choices_in_the_presets(preset, dataset):
    assert get_preset("qlae", dataset, preset)[0].qlae_init == "normal"
    # the posterior mean, as disentanglement_lib (the authors scored a sample)
    assert get_preset("betavae", dataset, preset)[0].evaluate_on == "mean"
    assert get_preset("factorvae", dataset, preset)[0].evaluate_on == "mean"


def test_paper_text_is_one_set_away():
    spec = _spec("factorqvae", {"tau_rate": 1e-5, "steps": 100_000}, preset="paper",
                 dataset="shapes3d")
    assert (spec.train_config.steps, spec.train_config.cosine_steps,
            spec.train_config.tau_rate) == (100_000, 50_000, 1e-5)
    spec = _spec("qvae", {"cosine_after": "hold"}, preset="paper", dataset="shapes3d")
    assert spec.train_config.cosine_after == "hold"
    assert _spec("betavae", {"evaluate_on": "sample"}).model_config.evaluate_on == "sample"
    assert _spec("qlae", {"qlae_init": "linspace"}).model_config.qlae_init == "linspace"


def test_qlae_initial_values():
    config, _ = get_preset("qlae", "toyshapes", "smoke")
    values = {}
    for init in ("linspace", "linspace_half", "normal"):
        torch.manual_seed(0)
        values[init] = build_model("qlae", with_overrides(config, {"qlae_init": init})).codebook
    k = config.codebook_size
    assert torch.equal(values["linspace"][3], torch.linspace(-1, 1, k))
    assert torch.equal(values["linspace_half"][0], torch.linspace(-0.5, 0.5, k))
    normal = values["normal"].detach()
    assert normal.shape == (config.latent_dim, k)
    assert not torch.equal(normal, normal.sort(dim=1).values)  # no order
    assert 0.5 < normal.std().item() < 1.5
    with pytest.raises(ValueError, match="qlae_init must be one of"):
        with_overrides(config, {"qlae_init": "uniform"})


@pytest.mark.parametrize("model", ["betavae", "factorvae"])
def test_vaes_evaluate_on_what_the_config_says(model):
    config, _ = get_preset(model, "toyshapes", "smoke")
    x = torch.rand(6, 3, config.image_size, config.image_size) - 0.5
    torch.manual_seed(0)
    net = build_model(model, with_overrides(config, {"evaluate_on": "mean"})).eval()
    mean = net.posterior(x)[0]
    assert torch.equal(net.encode(x), mean)
    sampling = build_model(model, with_overrides(config, {"evaluate_on": "sample"})).eval()
    sampling.load_state_dict(net.state_dict())
    torch.manual_seed(1)
    drawn = sampling.encode(x)
    torch.manual_seed(1)
    assert torch.equal(drawn, sampling.encode(x, sample=True))
    assert not torch.equal(drawn, mean)
    assert torch.equal(sampling.encode(x, sample=False), mean)


# -- --steps stretches the schedules --------------------------------------------------------

@pytest.mark.parametrize("model, preset, dataset", [
    ("factorqvae", "cpu", "toyshapes"), ("qvae", "paper", "shapes3d"),
    ("factorqvae", "paper", "shapes3d"), ("ae", "smoke", "toyshapes")])
@pytest.mark.parametrize("factor", [0.5, 2.0, 3.0])
def test_stretched_schedules_keep_their_fraction_of_the_run(model, preset, dataset, factor):
    _, base = get_preset(model, dataset, preset)
    steps = int(base.steps * factor)
    _, stretched = get_preset(model, dataset, preset, steps=steps)
    assert stretched == stretch_schedules(base, steps)
    assert stretched.steps == steps
    assert stretched.cosine_steps / steps == pytest.approx(base.cosine_steps / base.steps)
    # the temperature at the end of the run is the preset's
    assert stretched.tau_rate * steps == pytest.approx(base.tau_rate * base.steps)
    assert (stretched.lr, stretched.lr_min, stretched.cosine_after, stretched.batch_size) == (
        base.lr, base.lr_min, base.cosine_after, base.batch_size)


def test_cpu_preset_at_6000_steps_anneals_over_all_of_them():
    _, train_config = get_preset("factorqvae", "toyshapes", "cpu", steps=6000)
    assert train_config.cosine_steps == 6000
    assert math.exp(-train_config.tau_rate * 6000) == pytest.approx(math.exp(-1))


def test_steps_option_stretches_and_set_steps_does_not():
    _, base = get_preset("factorqvae", "toyshapes", "cpu")
    by_option = _spec("factorqvae", steps=6000).train_config
    assert (by_option.steps, by_option.cosine_steps) == (6000, 6000)
    by_set = _spec("factorqvae", {"steps": 6000}).train_config
    assert (by_set.steps, by_set.cosine_steps, by_set.tau_rate) == (
        6000, base.cosine_steps, base.tau_rate)
    # --set comes last: it overrides what --steps stretched
    both = _spec("factorqvae", {"cosine_steps": 1000}, steps=6000).train_config
    assert (both.steps, both.cosine_steps) == (6000, 1000)


def test_stretch_schedules_rejects_bad_steps():
    _, base = get_preset("ae", "toyshapes", "cpu")
    with pytest.raises(ValueError, match="steps must be a positive int: got 0"):
        stretch_schedules(base, 0)


def test_steps_help_says_it_stretches_the_schedules():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "schedules stretched" in " ".join(result.output.split())


def test_loop_follows_the_periodic_cosine(tmp_path):
    rates = {}
    for after in ("hold", "periodic"):
        spec = _spec("ae", {"cosine_steps": 1, "cosine_after": after}, preset="smoke")
        train(tmp_path / after, spec, device="cpu", progress=False, evaluate=False)
        with open(tmp_path / after / "log.csv", newline="") as handle:
            rates[after] = [float(row["lr"]) for row in csv.DictReader(handle)]
    lr, lr_min = spec.train_config.lr, spec.train_config.lr_min
    assert rates["hold"] == pytest.approx([lr, lr_min, lr_min, lr_min])
    assert rates["periodic"] == pytest.approx([lr, lr_min, lr, lr_min])
