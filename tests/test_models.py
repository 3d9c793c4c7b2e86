"""Every registered model: builds, trains a step, encodes, decodes, is deterministic in eval."""
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from reference_models.config import ModelConfig, with_overrides
from reference_models.models.base import ReferenceModel
from reference_models.models.registry import (
    ModelRegistry, build_model, get_model_class, list_models,
)
from reference_models.presets import FACTOR_COUNTS, PAPER_DATASETS, get_preset

EXPECTED_MODELS = ["ae", "betavae", "bioae", "dvae", "factordvae", "factorqvae", "factorvae",
                   "factorvqvae", "qlae", "qvae", "vqvae"]
ALL_MODELS = list_models()
FACTOR_MODELS = [n for n in ALL_MODELS if get_model_class(n).has_discriminator]
QUANTIZED_MODELS = [n for n in ALL_MODELS if get_model_class(n).is_quantized]
EXPECTED_TERMS = {
    "ae": {"recon"},
    "bioae": {"recon", "nonneg", "activity"},
    "betavae": {"recon", "kl"},
    "factorvae": {"recon", "kl", "tc"},
    "qlae": {"recon", "quantize", "commit", "perplexity"},
    "dvae": {"recon", "kl", "perplexity"},
    "qvae": {"recon", "kl", "perplexity"},
    "vqvae": {"recon", "kl", "perplexity"},
    "factordvae": {"recon", "kl", "perplexity", "tc"},
    "factorqvae": {"recon", "kl", "perplexity", "tc"},
    "factorvqvae": {"recon", "kl", "perplexity", "tc"},
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks: with two threads on two shared cores the intra-op synchronisation costs
    # far more than it saves (15x slower under load), so these tests run on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smoke_model(name: str, seed: int = 0):
    """A smoke-preset model and two batches of images in [-0.5, 0.5]."""
    torch.manual_seed(seed)
    model_config, train_config = get_preset(name, "toyshapes", "smoke")
    model = build_model(name, model_config)
    generator = torch.Generator().manual_seed(seed)
    shape = (train_config.batch_size, 3, model_config.image_size, model_config.image_size)
    x = torch.rand(shape, generator=generator) - 0.5
    x_prime = torch.rand(shape, generator=generator) - 0.5
    return model, x, x_prime


# -- registry ---------------------------------------------------------------------------

def test_registry_holds_every_model_of_the_paper():
    assert ALL_MODELS == EXPECTED_MODELS
    assert FACTOR_MODELS == ["factordvae", "factorqvae", "factorvae", "factorvqvae"]
    assert set(QUANTIZED_MODELS) == {"qlae", "dvae", "qvae", "vqvae", "factordvae",
                                     "factorqvae", "factorvqvae"}


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; valid models: ae, betavae, "):
        build_model("nope", ModelConfig())


def test_duplicate_name_is_an_error():
    registry = ModelRegistry()

    @registry.register("twin")
    class First(ReferenceModel):
        pass

    with pytest.raises(ValueError, match="'twin' is already registered"):
        @registry.register("twin")
        class Second(ReferenceModel):
            pass

    assert registry.names() == ["twin"] and First.name == "twin"


def test_build_model_needs_a_model_config():
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        build_model("ae", {"latent_dim": 4})


def test_list_models_command_prints_the_names():
    from disentangle_eval.cli.train_reference import main

    result = CliRunner().invoke(main, ["--list-models"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == EXPECTED_MODELS


def test_list_models_through_the_installed_script():
    script = shutil.which("train-reference") or str(Path(sys.executable).parent / "train-reference")
    if not Path(script).exists():
        pytest.skip("train-reference is not installed")
    result = subprocess.run([script, "--list-models"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == EXPECTED_MODELS


# -- building in every preset -------------------------------------------------------------

@pytest.mark.parametrize("dataset", PAPER_DATASETS)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_paper_preset_builds(name, dataset):
    model_config, _ = get_preset(name, dataset, "paper")
    # The paper's network (n = 128 at 64x64, ~20M parameters) built without memory: the
    # meta device records shapes only.
    with torch.device("meta"):
        model = build_model(name, model_config)
    assert model.latent_dim == 2 * FACTOR_COUNTS[dataset]
    assert model.encoder.features[0].out_channels == 128
    assert model.decoder.project.out_features == 64 * 16 * 16
    if model.has_discriminator:
        linears = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.Linear)]
        assert len(linears) == 6 and linears[0].out_features == 1000


@pytest.mark.parametrize("dataset", ["toyshapes", "toysprites"])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_cpu_preset_builds_and_runs(name, dataset):
    model_config, _ = get_preset(name, dataset, "cpu")
    model = build_model(name, model_config).eval()
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        assert model.encode(x).shape == (2, 2 * FACTOR_COUNTS[dataset])
        assert model(x).shape == x.shape


# -- one training step --------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_MODELS)
def test_training_step_gives_finite_losses_and_gradients_everywhere(name):
    model, x, x_prime = smoke_model(name)
    model.train()
    terms = model.loss_terms(x, tau=0.5)
    assert set(terms) == {"loss"} | EXPECTED_TERMS[name]
    assert terms["loss"].requires_grad and terms["loss"].dim() == 0
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        assert key == "loss" or not value.requires_grad, key
    terms["loss"].backward()
    for pname, param in model.named_parameters():
        if pname.startswith("discriminator."):
            # Algorithm 1: the VAE loss does not train the discriminator.
            assert param.grad is None, pname
        else:
            assert param.grad is not None, pname
            assert torch.isfinite(param.grad).all(), pname
            assert param.grad.abs().sum() > 0, pname

    if model.has_discriminator:
        model.zero_grad(set_to_none=True)
        disc_terms = model.discriminator_loss(x_prime, tau=0.5)
        assert torch.isfinite(disc_terms["loss"])
        assert 0.0 <= disc_terms["accuracy"].item() <= 1.0
        disc_terms["loss"].backward()
        for pname, param in model.named_parameters():
            if pname.startswith("discriminator."):
                assert param.grad is not None and param.grad.abs().sum() > 0, pname
                assert torch.isfinite(param.grad).all(), pname
            else:
                assert param.grad is None, pname


@pytest.mark.parametrize("name", ALL_MODELS)
def test_loss_is_the_weighted_sum_of_its_terms(name):
    model, x, _ = smoke_model(name)
    model.eval()
    terms = model.loss_terms(x)
    config = model.config
    weights = {"recon": 1.0, "kl": config.beta, "tc": config.gamma,
               "nonneg": config.beta_nonneg, "activity": config.beta_activity,
               "quantize": config.quantize_weight, "commit": config.commit_weight}
    expected = sum(weights[key] * value for key, value in terms.items() if key in weights)
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_groups_split_the_model(name):
    model, _, _ = smoke_model(name)
    vae = {id(p) for p in model.vae_parameters()}
    disc = {id(p) for p in model.discriminator_parameters()}
    assert not vae & disc
    assert vae | disc == {id(p) for p in model.parameters()}
    assert bool(disc) == model.has_discriminator


@pytest.mark.parametrize("name", FACTOR_MODELS)
def test_algorithm_1_runs_several_iterations_with_two_optimisers(name):
    # The published code backpropagated the discriminator loss through an output computed
    # before the VAE optimiser step, which current PyTorch rejects; this must just work.
    model, x, x_prime = smoke_model(name)
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=1e-3)
    disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=1e-3)
    disc_before = [p.detach().clone() for p in model.discriminator_parameters()]
    for _ in range(3):
        terms = model.loss_terms(x, tau=1.0)
        vae_opt.zero_grad()
        terms["loss"].backward()
        vae_opt.step()
        disc_terms = model.discriminator_loss(x_prime, tau=1.0)
        disc_opt.zero_grad()
        disc_terms["loss"].backward()
        disc_opt.step()
    assert torch.isfinite(disc_terms["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, model.discriminator_parameters()))


@pytest.mark.parametrize("name", FACTOR_MODELS)
def test_discriminator_loss_needs_the_joint_codes(name):
    model, x, x_prime = smoke_model(name)
    with pytest.raises(ValueError, match="call loss_terms"):
        model.discriminator_loss(x_prime)
    with torch.no_grad():
        joint = model._discriminator_codes(model._sample(x, 1.0))
    assert torch.isfinite(model.discriminator_loss(x_prime, joint_codes=joint)["loss"])


@pytest.mark.parametrize("name", sorted(set(ALL_MODELS) - set(FACTOR_MODELS)))
def test_models_without_discriminator_say_so(name):
    model, _, x_prime = smoke_model(name)
    assert not model.has_discriminator and model.discriminator_parameters() == []
    with pytest.raises(TypeError, match="has no discriminator"):
        model.discriminator_loss(x_prime)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL_MODELS)
def test_training_step_on_cuda(name):
    model, x, x_prime = smoke_model(name)
    model, x, x_prime = model.cuda(), x.cuda(), x_prime.cuda()
    terms = model.loss_terms(x, tau=0.5)
    terms["loss"].backward()
    assert all(v.device.type == "cuda" and torch.isfinite(v) for v in terms.values())
    if model.has_discriminator:
        model.discriminator_loss(x_prime, tau=0.5)["loss"].backward()
    model.eval()
    with torch.no_grad():
        assert model.decode(model.encode(x)).shape == x.shape


# -- representation -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_MODELS)
def test_encode_decode_shapes(name):
    model, x, _ = smoke_model(name)
    model.eval()
    with torch.no_grad():
        representation = model.encode(x)
        assert representation.shape == (x.shape[0], model.latent_dim)
        if model.is_quantized:
            assert representation.dtype == torch.int64
            codebook_size = model.config.codebook_size
            assert 0 <= representation.min() and representation.max() < codebook_size
            values = model.code_values(representation)
            assert values.shape == (x.shape[0], model.latent_dim * model.config.codebook_dim)
            assert model.codebook.shape in {(codebook_size, model.config.codebook_dim),
                                            (model.latent_dim, codebook_size)}
        else:
            assert representation.dtype == torch.float32
        assert model.decode(representation).shape == x.shape


@pytest.mark.parametrize("name", ALL_MODELS)
def test_eval_mode_is_deterministic(name):
    model, x, _ = smoke_model(name)
    model.eval()
    with torch.no_grad():
        first, second = model.loss_terms(x), model.loss_terms(x)
        for key in first:
            assert torch.equal(first[key], second[key]), key
        assert torch.equal(model.encode(x), model.encode(x))
        assert torch.equal(model(x), model(x))


def test_quantised_codes_match_the_evaluation_step():
    # encode() gives the codes the evaluation-mode decoder reads.
    model, x, _ = smoke_model("factorqvae")
    model.eval()
    with torch.no_grad():
        sample = model._sample(x, 1.0)
        assert torch.equal(model.encode(x), sample.indices)
        assert torch.allclose(model.code_values(sample.indices), sample.quantized)


def test_encode_sample_option():
    model, x, _ = smoke_model("betavae")
    with torch.no_grad():
        mean = model.encode(x)
        assert torch.equal(mean, model.encode(x))
        assert not torch.equal(mean, model.encode(x, sample=True))
    model, x, _ = smoke_model("qvae")
    with torch.no_grad():
        codes = model.encode(x, sample=True)
    assert codes.dtype == torch.int64 and codes.shape == (x.shape[0], model.latent_dim)


def test_training_mode_samples():
    model, x, _ = smoke_model("factorqvae")
    model.train()
    first, second = model.loss_terms(x), model.loss_terms(x)
    assert first["loss"].item() != second["loss"].item()


# -- errors -------------------------------------------------------------------------------

def test_loss_terms_checks_its_inputs():
    model, x, _ = smoke_model("qvae")
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3, 16, 16\): got \(8, 3, 8, 8\)"):
        model.loss_terms(x[:, :, :8, :8])
    with pytest.raises(ValueError, match="tau must be a positive number"):
        model.loss_terms(x, tau=0.0)


def test_decode_checks_the_representation():
    model, x, _ = smoke_model("qvae")
    with pytest.raises(TypeError, match="int64"):
        model.decode(torch.zeros(2, model.latent_dim))
    with pytest.raises(ValueError, match=f"codes must have shape \\(B, {model.latent_dim}\\)"):
        model.decode(torch.zeros(2, 3, dtype=torch.long))
    model, _, _ = smoke_model("ae")
    with pytest.raises(TypeError, match="float latents"):
        model.decode(torch.zeros(2, model.latent_dim, dtype=torch.long))


def test_qvae_needs_a_scalar_codebook():
    config, _ = get_preset("qvae", "shapes3d", "smoke")
    with pytest.raises(ValueError, match="needs codebook_dim=1"):
        build_model("qvae", with_overrides(config, {"codebook_dim": "4"}))
    vq = build_model("vqvae", dataclasses.replace(config, codebook_dim=4))
    assert vq.codebook.shape == (config.codebook_size, 4)


# -- learning -----------------------------------------------------------------------------

def _blob_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Images of two coloured Gaussian blobs at random places, scaled to [-0.5, 0.5]."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(),
                            indexing="ij")
    images = torch.zeros(n, 3, size, size)
    for _ in range(2):
        cx = torch.randint(3, size - 3, (n, 1, 1), generator=generator).float()
        cy = torch.randint(3, size - 3, (n, 1, 1), generator=generator).float()
        colour = torch.rand(n, 3, 1, 1, generator=generator)
        bump = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0).unsqueeze(1)
        images = torch.maximum(images, colour * bump)
    return images - 0.5


def test_factorqvae_loss_decreases_on_blobs():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    data = _blob_images(64, 16, generator)
    config = ModelConfig(image_size=16, width=8, dense_width=32, decoder_channels=8,
                         latent_dim=4, codebook_size=16, beta=1e-3, gamma=1e-4,
                         discriminator_width=64, discriminator_depth=3)
    model = build_model("factorqvae", config)
    vae_opt = torch.optim.Adam(model.vae_parameters(), lr=3e-3)
    disc_opt = torch.optim.Adam(model.discriminator_parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        batch = data[torch.randint(0, 64, (16,), generator=generator)]
        second = data[torch.randint(0, 64, (16,), generator=generator)]
        terms = model.loss_terms(batch, tau=1.0)
        vae_opt.zero_grad()
        terms["loss"].backward()
        vae_opt.step()
        disc_terms = model.discriminator_loss(second, tau=1.0)
        disc_opt.zero_grad()
        disc_terms["loss"].backward()
        disc_opt.step()
        losses.append(terms["loss"].item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
