"""Building blocks shared by every reference model (paper Appendix A.3, Table 4).

The convolutional encoder and decoder are the dVAE ones of DALL-E as the FactorQVAE paper
uses them: groups of residual blocks whose residual branch is scaled by
``1 / (number of blocks)**2`` so that the stack starts close to the identity.
Also here: the total-correlation discriminator of FactorVAE and the batch permutation that
samples from the product of the marginals.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "init_weights", "EncResBlock", "DecResBlock", "Encoder", "Decoder",
    "TCDiscriminator", "permute_dims",
]

GROUPS = 3  # resolutions S, S/2, S/4: two poolings in the encoder, two upsamplings back


def init_weights(module: nn.Module) -> None:
    """Initialise conv and linear weights from N(0, 0.02) and their biases to 0.

    Use with ``model.apply(init_weights)``; other modules are left alone.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _ResBlock(nn.Module):
    """``identity(x) + post_gain * residual(x)``; identity is a 1x1 conv when widths differ."""

    def __init__(self, in_channels: int, out_channels: int, total_blocks: int,
                 residual: nn.Sequential) -> None:
        super().__init__()
        self.identity = (nn.Identity() if in_channels == out_channels
                         else nn.Conv2d(in_channels, out_channels, kernel_size=1))
        self.residual = residual
        # DALL-E's dVAE scaling: a deep stack of blocks starts as a near-identity map.
        self.post_gain = 1.0 / total_blocks ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity(x) + self.post_gain * self.residual(x)


class EncResBlock(_ResBlock):
    """Encoder residual block: 3 x (ReLU, Conv3x3(h)), ReLU, Conv1x1(out), h = out / 4.

    Parameters
    ----------
    in_channels, out_channels : int
        Widths of input and output.
    total_blocks : int
        Residual blocks in the whole encoder; the residual branch is scaled by
        ``1 / total_blocks**2``.
    """

    def __init__(self, in_channels: int, out_channels: int, total_blocks: int) -> None:
        hidden = max(out_channels // 4, 1)
        residual = nn.Sequential(
            nn.ReLU(), nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, out_channels, kernel_size=1),
        )
        super().__init__(in_channels, out_channels, total_blocks, residual)


class DecResBlock(_ResBlock):
    """Decoder residual block: ReLU, Conv1x1(h), 2 x (ReLU, Conv3x3(h)), ReLU, Conv3x3(out).

    Parameters are those of :class:`EncResBlock`.
    """

    def __init__(self, in_channels: int, out_channels: int, total_blocks: int) -> None:
        hidden = max(out_channels // 4, 1)
        residual = nn.Sequential(
            nn.ReLU(), nn.Conv2d(in_channels, hidden, kernel_size=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(), nn.Conv2d(hidden, out_channels, kernel_size=3, padding=1),
        )
        super().__init__(in_channels, out_channels, total_blocks, residual)


class Encoder(nn.Module):
    """Images (B, C, S, S) to vectors (B, out_features).

    Conv3x3(n) -> 2x EncResBlock(n) -> MaxPool -> 2x EncResBlock(2n) -> MaxPool ->
    2x EncResBlock(4n) -> flatten -> ReLU, Linear(m), ReLU, Linear(m), ReLU -> Linear(o).

    Parameters
    ----------
    image_size : int
        Side S of the input, divisible by 4.
    channels : int
        Input channels C.
    width : int
        Base width n.
    dense_width : int
        Dense width m.
    out_features : int
        Output size o.
    blocks_per_group : int, default 2
        Residual blocks per resolution.
    """

    def __init__(self, image_size: int, channels: int, width: int, dense_width: int,
                 out_features: int, blocks_per_group: int = 2) -> None:
        super().__init__()
        total_blocks = GROUPS * blocks_per_group
        layers: list[nn.Module] = [nn.Conv2d(channels, width, kernel_size=3, padding=1)]
        in_width = width
        for group in range(GROUPS):
            out_width = width * 2 ** group
            for _ in range(blocks_per_group):
                layers.append(EncResBlock(in_width, out_width, total_blocks))
                in_width = out_width
            if group < GROUPS - 1:
                layers.append(nn.MaxPool2d(kernel_size=2))
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = in_width * (image_size // 2 ** (GROUPS - 1)) ** 2
        self.dense = nn.Sequential(
            nn.ReLU(), nn.Linear(flat, dense_width),
            nn.ReLU(), nn.Linear(dense_width, dense_width),
            nn.ReLU(),
        )
        self.head = nn.Linear(dense_width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dense(self.features(x)))


class Decoder(nn.Module):
    """Vectors (B, in_features) to images (B, C, S, S), linear output.

    Linear to (c, S/4, S/4) -> 2x DecResBlock(4n) -> Upsample -> 2x DecResBlock(2n) ->
    Upsample -> 2x DecResBlock(n) -> ReLU -> Conv1x1(C).

    Parameters
    ----------
    image_size, channels, width : int
        As for :class:`Encoder`.
    in_features : int
        Size of the (quantised) latent vector.
    decoder_channels : int
        Channels c of the first feature map.
    blocks_per_group : int, default 2
        Residual blocks per resolution.
    """

    def __init__(self, image_size: int, channels: int, width: int, in_features: int,
                 decoder_channels: int, blocks_per_group: int = 2) -> None:
        super().__init__()
        total_blocks = GROUPS * blocks_per_group
        self.start_shape = (decoder_channels, image_size // 4, image_size // 4)
        self.project = nn.Linear(in_features, decoder_channels * (image_size // 4) ** 2)
        layers: list[nn.Module] = []
        in_width = decoder_channels
        for group in reversed(range(GROUPS)):
            out_width = width * 2 ** group
            for _ in range(blocks_per_group):
                layers.append(DecResBlock(in_width, out_width, total_blocks))
                in_width = out_width
            if group > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers += [nn.ReLU(), nn.Conv2d(in_width, channels, kernel_size=1)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(z.shape[0], *self.start_shape))


class TCDiscriminator(nn.Module):
    """MLP telling joint codes from codes permuted across the batch (FactorVAE).

    ``depth`` linear layers with LeakyReLU(0.2) between them; the output is two logits,
    column 0 for "sampled from q(z)" (joint) and column 1 for "from the product of the
    marginals" (permuted), so ``logits[:, 0] - logits[:, 1]`` estimates
    ``log q(z) / prod_j q(z_j)`` (the paper's Eq. 7).

    Parameters
    ----------
    in_features : int
        Size of a flattened code (d for FactorVAE, d*K for one-hot codes).
    width : int, default 1000
        Hidden width.
    depth : int, default 6
        Number of linear layers (at least 2).
    """

    JOINT, PERMUTED = 0, 1

    def __init__(self, in_features: int, width: int = 1000, depth: int = 6) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2: got {depth}")
        layers: list[nn.Module] = []
        sizes = [in_features] + [width] * (depth - 1)
        for size_in, size_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(size_in, size_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(sizes[-1], 2))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) of codes (B, ...) flattened per sample."""
        return self.net(codes.flatten(1))


def permute_dims(codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each latent independently across the batch.

    Column ``j`` of the result is column ``j`` of ``codes`` under its own random
    permutation of the rows, which keeps every latent's marginal (the same multiset of
    values per column) and breaks the dependence between latents: a sample from the
    product of the marginals (FactorVAE's Algorithm 2).

    Parameters
    ----------
    codes : Tensor of shape (B, d) or (B, d, ...)
        Batch of codes; the trailing dimensions (e.g. the K entries of a one-hot) move
        together with their latent.
    generator : torch.Generator, optional
        Source of the permutations, on the device of ``codes``.

    Returns
    -------
    Tensor of the shape of ``codes``.
    """
    if codes.dim() < 2:
        raise ValueError(f"codes must have shape (B, d, ...): got {tuple(codes.shape)}")
    batch, latents = codes.shape[:2]
    # One random key per (row, latent); sorting the keys of a column gives its permutation.
    keys = torch.rand(batch, latents, generator=generator, device=codes.device)
    order = keys.argsort(dim=0)
    order = order.view(batch, latents, *([1] * (codes.dim() - 2))).expand_as(codes)
    return codes.gather(0, order)
