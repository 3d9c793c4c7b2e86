import math

import pytest
import torch

from reference_models.models.layers import (
    DecResBlock, EncResBlock, TCDiscriminator, init_weights, permute_dims,
)
from reference_models.models.quantizers import (
    CategoricalCodebook, DistanceQuantizer, ScalarLatentQuantizer, kl_to_uniform, perplexity,
    relaxed_one_hot,
)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


# -- round trips: codes -> values -> codes ---------------------------------------------

def test_scalar_latent_quantizer_round_trip(generator):
    quantizer = ScalarLatentQuantizer(latent_dim=5, values_per_latent=7)
    codes = torch.randint(0, 7, (32, 5), generator=generator)
    values = quantizer.code_values(codes)
    assert values.shape == (32, 5)
    assert torch.equal(quantizer.nearest(values), codes)


@pytest.mark.parametrize("distance", ["squared", "absolute"])
@pytest.mark.parametrize("codebook_dim", [1, 3])
def test_distance_quantizer_round_trip(generator, distance, codebook_dim):
    torch.manual_seed(0)
    quantizer = DistanceQuantizer(16, codebook_dim, distance).eval()
    codes = torch.randint(0, 16, (32, 6), generator=generator)
    values = quantizer.code_values(codes)
    assert values.shape == (32, 6 * codebook_dim)
    out = quantizer(values, tau=1.0)
    assert torch.equal(out.indices, codes)
    assert torch.allclose(out.quantized, values)


def test_categorical_codebook_round_trip_through_one_hot_logits(generator):
    codebook = CategoricalCodebook(8).eval()
    codes = torch.randint(0, 8, (10, 4), generator=generator)
    logits = torch.nn.functional.one_hot(codes, 8).float() * 10.0
    out = codebook(logits, tau=1.0)
    assert torch.equal(out.indices, codes)
    assert torch.equal(out.quantized, codebook.code_values(codes))


def test_code_values_rejects_bad_codes():
    quantizer = ScalarLatentQuantizer(3, 4)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        quantizer.code_values(torch.tensor([[0, 1, 4]]))
    with pytest.raises(TypeError, match="int64"):
        quantizer.code_values(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="3 latents"):
        quantizer.code_values(torch.zeros(2, 2, dtype=torch.long))


# -- straight-through and nearest values ---------------------------------------------------

def test_scalar_latent_quantizer_straight_through_and_losses():
    quantizer = ScalarLatentQuantizer(latent_dim=2, values_per_latent=3)  # values -1, 0, 1
    z = torch.tensor([[0.4, -0.8]], requires_grad=True)
    z_st, indices, quantize_loss, commit_loss = quantizer(z)
    assert indices.tolist() == [[1, 0]]
    assert z_st[0].tolist() == pytest.approx([0.0, -1.0])
    # (0.4^2 + 0.2^2) / 2 for both losses; they differ in which side is stopped.
    assert quantize_loss.item() == pytest.approx(0.1) and commit_loss.item() == pytest.approx(0.1)
    z_st.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight through
    quantizer.codebook.grad = None
    quantize_loss.backward()
    assert quantizer.codebook.grad is not None and quantizer.codebook.grad.abs().sum() > 0


@pytest.mark.parametrize("distance", ["squared", "absolute"])
def test_distance_quantizer_eval_picks_nearest_codeword(generator, distance):
    quantizer = DistanceQuantizer(32, 2, distance).eval()
    z_e = torch.randn(50, 4 * 2, generator=generator)
    chunks = z_e.view(50, 4, 1, 2)
    difference = chunks - quantizer.codebook
    brute = (difference.square().sum(-1) if distance == "squared"
             else difference.abs().sum(-1)).argmin(-1)
    out = quantizer(z_e, tau=1.0)
    assert torch.equal(out.indices, brute)
    assert torch.equal(out.weights, torch.nn.functional.one_hot(brute, 32).float())


def test_absolute_and_squared_logits_follow_eq3():
    quantizer = DistanceQuantizer(3, 1, "absolute")
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[-1.0], [0.0], [2.0]]))
    z_e = torch.tensor([[0.5]])
    assert quantizer.logits(z_e).tolist() == [[[-1.5, -0.5, -1.5]]]
    quantizer.distance = "squared"
    assert quantizer.logits(z_e).tolist() == [[[-2.25, -0.25, -2.25]]]


def test_relaxed_sample_tends_to_a_codeword_as_tau_goes_to_zero(generator):
    quantizer = DistanceQuantizer(16, 1).train()
    z_e = torch.randn(64, 6, generator=generator)
    gaps = []
    for tau in (1.0, 0.1, 1e-3):
        noise = torch.Generator().manual_seed(1)  # same Gumbel draws at every tau
        out = quantizer(z_e, tau=tau, generator=noise)
        gaps.append((out.quantized - quantizer.code_values(out.indices)).abs().mean().item())
        assert torch.allclose(out.weights.sum(-1), torch.ones(64, 6))
    # Mean, not max: a near tie of two perturbed logits stays soft at any fixed tau.
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3


def test_relaxed_sample_tends_to_the_nearest_codeword_for_a_sharp_posterior(generator):
    # Codewords far apart (distances in the hundreds): the posterior is all but one-hot on
    # the nearest codeword, so the Gumbel noise cannot move the choice.
    quantizer = DistanceQuantizer(8, 1).train()
    with torch.no_grad():
        quantizer.codebook.copy_(torch.arange(8.0).unsqueeze(1) * 30.0)
    z_e = torch.randint(0, 8, (40, 5), generator=generator).float() * 30.0 + 2.0
    nearest = quantizer.eval()(z_e, tau=1.0).indices
    quantizer.train()
    out = quantizer(z_e, tau=1e-3, generator=generator)
    assert torch.equal(out.indices, nearest)
    assert torch.allclose(out.quantized, quantizer.code_values(nearest), atol=1e-5)


def test_relaxed_one_hot_rejects_non_positive_tau():
    with pytest.raises(ValueError, match="tau must be positive"):
        relaxed_one_hot(torch.zeros(2, 3), 0.0)


# -- KL to the uniform prior and perplexity -----------------------------------------------

@pytest.mark.parametrize("k", [2, 16, 64])
def test_kl_to_uniform_is_zero_for_uniform_and_log_k_for_one_hot(k):
    uniform = torch.zeros(5, 3, k)
    assert kl_to_uniform(uniform).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = torch.full((5, 3, k), -1e4)
    one_hot[..., 0] = 0.0
    assert kl_to_uniform(one_hot).item() == pytest.approx(math.log(k), rel=1e-5)


def test_perplexity_counts_used_entries():
    assert perplexity(torch.zeros(10, 3, dtype=torch.long), 8).item() == pytest.approx(1.0)
    assert perplexity(torch.arange(8).repeat(5, 1), 8).item() == pytest.approx(8.0, rel=1e-5)


# -- permutation ------------------------------------------------------------------------

def test_permute_dims_keeps_each_marginal_and_breaks_the_joint(generator):
    batch = 200
    first = torch.randint(0, 10, (batch,), generator=generator)
    codes = torch.stack([first, first, (first + 3) % 10], dim=1)  # fully dependent latents
    permuted = permute_dims(codes, generator=generator)
    for j in range(codes.shape[1]):
        assert torch.equal(permuted[:, j].sort().values, codes[:, j].sort().values)
    assert (permuted[:, 0] == permuted[:, 1]).float().mean() < 0.5
    assert ((permuted[:, 0] + 3) % 10 == permuted[:, 2]).float().mean() < 0.5


def test_permute_dims_moves_one_hot_rows_together(generator):
    codes = torch.nn.functional.one_hot(torch.randint(0, 6, (50, 4), generator=generator), 6)
    permuted = permute_dims(codes.float(), generator=generator)
    assert torch.equal(permuted.sum(-1), torch.ones(50, 4))
    for j in range(4):
        assert torch.equal(permuted[:, j].sum(0), codes[:, j].sum(0).float())


def test_permute_dims_uses_independent_permutations(generator):
    codes = torch.arange(100).unsqueeze(1).repeat(1, 4)
    permuted = permute_dims(codes, generator=generator)
    assert not torch.equal(permuted[:, 0], permuted[:, 1])


# -- layers -----------------------------------------------------------------------------

def test_res_blocks_follow_table_4():
    enc = EncResBlock(8, 16, total_blocks=6)
    convs = [m for m in enc.residual if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3 + [(1, 1)]
    assert [c.out_channels for c in convs] == [4, 4, 4, 16]
    assert enc.post_gain == pytest.approx(1 / 36)
    assert isinstance(enc.identity, torch.nn.Conv2d) and enc.identity.kernel_size == (1, 1)
    dec = DecResBlock(16, 16, total_blocks=6)
    convs = [m for m in dec.residual if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1)] + [(3, 3)] * 3
    assert isinstance(dec.identity, torch.nn.Identity)


def test_init_weights_normal_002_and_zero_bias():
    torch.manual_seed(0)
    layer = torch.nn.Linear(400, 400)
    init_weights(layer)
    assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert layer.bias.abs().max().item() == 0.0


def test_tc_discriminator_shape_and_depth():
    disc = TCDiscriminator(12 * 8, width=32, depth=6)
    linears = [m for m in disc.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6
    assert all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2
               for m in disc.net if not isinstance(m, torch.nn.Linear))
    assert disc(torch.zeros(5, 12, 8)).shape == (5, 2)
