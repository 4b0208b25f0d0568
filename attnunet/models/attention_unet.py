"""Attention U-Net (Oktay et al., 2018) for 2D and 3D segmentation.

``attention=False`` builds the identical network without gates: the matched U-Net baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnunet.errors import AttnUNetError
from attnunet.models.attention_gate import AttentionGate
from attnunet.models.gated_self_attention import GatedSelfAttention
from attnunet.models.layers import activation_layer, conv_nd, conv_transpose_nd, interpolation_mode, norm_nd

BOTTLENECK_ATTENTION = ("none", "gated", "plain")


@dataclass
class NetOutput:
    """Everything one forward pass produces.

    Attributes:
        logits: ``(B, num_classes, *S)`` on the input grid.
        aux_logits: deep-supervision logits, finest first; entry ``k`` has shape
            ``(B, num_classes, *S_k)`` on decoder level ``k + 1``'s grid (empty when off).
        attention: gate name (``level<k>``) -> alpha ``(B, 1, *S_k)`` on level ``k``'s grid; with a
            bottleneck block also ``bottleneck`` -> its forget gate averaged over channels.
    """

    logits: torch.Tensor
    aux_logits: list[torch.Tensor] = field(default_factory=list)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)


class ConvBlock(nn.Sequential):
    """Two ``3^d`` convolutions, each followed by norm and :func:`~.layers.activation_layer` (and optional dropout)."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int, norm: str, dropout: float, activation: str) -> None:
        conv = conv_nd(spatial_dims)
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers += [
                conv(c_in, out_ch, kernel_size=3, padding=1, bias=False),
                norm_nd(norm, spatial_dims, out_ch),
                activation_layer(activation),
            ]
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout) if spatial_dims == 3 else nn.Dropout2d(dropout))
        super().__init__(*layers)


class AttentionUNet(nn.Module):
    """U-Net whose skip connections pass through additive grid attention gates.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (1 for CT).
        num_classes: output classes including background.
        channels: feature width per level, finest first; ``len(channels) - 1`` downsamplings.
            The paper's widths (16, 32, 64, 128, 256) give about 6.4 M parameters in 3D.
        strides: downsampling factor between level ``k`` and ``k + 1`` (int or per-axis tuple);
            default 2 everywhere.
        attention: gate the skips (False: the matched plain U-Net).
        attention_levels: which skip levels are gated (0 = finest); default all but the finest,
            as in the paper.
        norm: ``instance`` or ``batch``.
        activation: ``relu`` (the paper's; the default here, so checkpoints whose config predates
            this setting rebuild as trained) or ``leaky_relu`` (the configs' default: trains
            without the dead output level that ReLU can fall into, :func:`~.layers.activation_layer`).
        dropout: channel dropout after every conv block (0 disables).
        deep_supervision: add 1x1 heads on every decoder level coarser than the output.
        bottleneck_attention: ``none``; ``gated`` inserts a
            :class:`~attnunet.models.gated_self_attention.GatedSelfAttention` (forget-gate
            self-attention over the bottleneck voxels); ``plain`` the same block without the gate.
        bottleneck_heads: attention heads of that block.
        bottleneck_position: ``conv`` (depth-wise conv position encoding) or ``none``.

    Inputs of any spatial size are accepted: they are zero-padded to a multiple of the total
    stride (:meth:`padded_size`) and the outputs cropped back. The only sizes refused are those
    that leave a single voxel per channel at the bottleneck, which normalisation cannot handle
    (instance norm always; batch norm when training on one sample).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        strides: Sequence[int | Sequence[int]] | None = None,
        attention: bool = True,
        attention_levels: Sequence[int] | None = None,
        norm: str = "instance",
        activation: str = "relu",
        dropout: float = 0.0,
        deep_supervision: bool = False,
        bottleneck_attention: str = "none",
        bottleneck_heads: int = 4,
        bottleneck_position: str = "conv",
    ) -> None:
        super().__init__()
        depth = len(channels) - 1
        if depth < 1:
            raise ValueError(f"channels needs at least two levels, got {list(channels)}")
        strides = [2] * depth if strides is None else list(strides)
        if len(strides) != depth:
            raise ValueError(f"need {depth} strides for channels {list(channels)}, got {strides}")
        self.spatial_dims = spatial_dims
        self.norm = norm
        self.strides = [_as_tuple(s, spatial_dims) for s in strides]
        self.total_stride = tuple(math.prod(s[a] for s in self.strides) for a in range(spatial_dims))
        gated = set(range(1, depth) if attention_levels is None else attention_levels) if attention else set()
        if not gated <= set(range(depth)):
            raise ValueError(f"attention_levels must lie in 0..{depth - 1}, got {sorted(gated)}")
        self.gated_levels = sorted(gated)

        conv = conv_nd(spatial_dims)
        pool = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        self.encoder = nn.ModuleList([ConvBlock(spatial_dims, in_channels, channels[0], norm, dropout, activation)])
        self.pools = nn.ModuleList()
        for k in range(1, depth + 1):
            self.pools.append(pool(kernel_size=self.strides[k - 1], stride=self.strides[k - 1]))
            self.encoder.append(ConvBlock(spatial_dims, channels[k - 1], channels[k], norm, dropout, activation))

        if bottleneck_attention not in BOTTLENECK_ATTENTION:
            raise ValueError(
                f"bottleneck_attention must be one of {BOTTLENECK_ATTENTION}, got {bottleneck_attention!r}"
            )
        self.bottleneck = (
            None
            if bottleneck_attention == "none"
            else GatedSelfAttention(
                spatial_dims,
                channels[-1],
                heads=bottleneck_heads,
                gated=bottleneck_attention == "gated",
                position=bottleneck_position,
            )
        )

        up = conv_transpose_nd(spatial_dims)
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.gates = nn.ModuleDict()
        for k in range(depth):  # decoder level k receives the gating signal from level k + 1
            s = self.strides[k]
            self.upsamplers.append(up(channels[k + 1], channels[k], kernel_size=s, stride=s))
            self.decoder.append(ConvBlock(spatial_dims, 2 * channels[k], channels[k], norm, dropout, activation))
            if k in gated:
                self.gates[f"level{k}"] = AttentionGate(spatial_dims, channels[k], channels[k + 1], stride=s, norm=norm)
        self.head = conv(channels[0], num_classes, kernel_size=1)
        self.aux_heads = nn.ModuleList(
            [conv(channels[k], num_classes, kernel_size=1) for k in range(1, depth)] if deep_supervision else []
        )

    @property
    def attention_names(self) -> list[str]:
        """Keys of :attr:`NetOutput.attention`: gated levels, coarsest first, then ``bottleneck``."""
        names = [f"level{k}" for k in reversed(self.gated_levels)]
        return names + (["bottleneck"] if self.bottleneck is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S)`` -> logits ``(B, num_classes, *S)``."""
        return self.forward_detailed(x).logits

    def forward_detailed(self, x: torch.Tensor) -> NetOutput:
        """Logits, deep-supervision logits (training mode only) and per-gate alpha maps."""
        spatial = x.shape[2:]
        self._check_bottleneck(x.shape[0], spatial)
        x = self._pad(x)
        skips: list[torch.Tensor] = []
        h = x
        for k, block in enumerate(self.encoder):
            if k > 0:
                h = self.pools[k - 1](h)
            h = block(h)
            skips.append(h)

        attention: dict[str, torch.Tensor] = {}
        if self.bottleneck is not None:
            skips[-1], attention["bottleneck"] = self.bottleneck(skips[-1])
        decoded: dict[int, torch.Tensor] = {}
        g = skips[-1]
        for k in reversed(range(len(self.decoder))):
            skip = skips[k]
            name = f"level{k}"
            if name in self.gates:
                skip, attention[name] = self.gates[name](skip, g)
            g = self.decoder[k](torch.cat([skip, self.upsamplers[k](g)], dim=1))
            decoded[k] = g

        logits = self._crop(self.head(g), spatial)
        aux = [head(decoded[k + 1]) for k, head in enumerate(self.aux_heads)] if self.training else []
        return NetOutput(logits=logits, aux_logits=aux, attention=attention)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gate name -> alpha resampled to the input grid, ``(B, 1, *S)`` in [0, 1]."""
        return self.attention_maps_from(self.forward_detailed(x), x.shape[2:])

    def attention_maps_from(self, out: NetOutput, spatial: Sequence[int]) -> dict[str, torch.Tensor]:
        """Resample the alphas of a :meth:`forward_detailed` result onto an input of size ``spatial``."""
        padded = self.padded_size(spatial)
        mode = interpolation_mode(self.spatial_dims)
        return {
            name: self._crop(F.interpolate(a, size=padded, mode=mode, align_corners=False), spatial)
            for name, a in out.attention.items()
        }

    def padded_size(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The grid an input of size ``spatial`` is run on: each axis rounded up to a multiple of
        the total stride. Deep-supervision logits live on this grid divided by the level's stride."""
        return tuple(_ceil_to(int(n), s) for n, s in zip(spatial, self.total_stride))

    def _check_bottleneck(self, batch: int, spatial: Sequence[int]) -> None:
        """Refuse inputs whose bottleneck has a single value per channel to normalise."""
        voxels = math.prod(n // s for n, s in zip(self.padded_size(spatial), self.total_stride))
        values = voxels * batch if self.norm == "batch" else voxels
        if values == 1 and (self.norm == "instance" or self.training):
            size = "x".join(str(int(n)) for n in spatial)
            stride = "x".join(str(s) for s in self.total_stride)
            raise AttnUNetError(
                f"input size {size} leaves one voxel at the bottleneck (total stride {stride}), too few for "
                f"{self.norm} norm: use a patch / window larger than the total stride along at least one axis"
            )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = [p - n for n, p in zip(x.shape[2:], self.padded_size(x.shape[2:]))]
        if not any(extra):
            return x
        pad: list[int] = []
        for e in reversed(extra):  # F.pad lists the last axis first
            pad += [0, e]
        return F.pad(x, pad)

    @staticmethod
    def _crop(t: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        if tuple(t.shape[2:]) == tuple(spatial):
            return t
        return t[(..., *(slice(0, n) for n in spatial))]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _as_tuple(s: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    return (int(s),) * spatial_dims if isinstance(s, int) else tuple(int(v) for v in s)


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m
