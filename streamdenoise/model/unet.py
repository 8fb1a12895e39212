"""The score network s_θ(y): a small fully convolutional U-Net (METHOD §2).

One channel in, one channel out, no time or noise-level input. The output is the score
∇_y log p(y) of normalised micrographs, in normalised units (1/intensity); denoising turns it
into an image through Tweedie's formula (`streamdenoise.model.inference`).

Layout, for levels i = 0 … L−1 with channels c_i = base_channels · channel_multipliers[i]:

    stem conv3x3 (1 → c_0)
    encoder: level i = `blocks_per_level` residual blocks at c_i, then (i < L−1) downsample ×2
    bottleneck: one more residual block at c_{L−1}  (its activations feed retrieval features)
    decoder: level i = L−2 … 0: upsample ×2, concatenate the encoder's level-i output,
             `blocks_per_level` residual blocks down to c_i. Upsampling is nearest ×2
             followed by a 3×3 convolution at the fine resolution keeping c_{i+1} channels
             ("highres", the default), or a 3×3 convolution at the coarse resolution to c_i
             channels followed by nearest ×2 ("lowres": ~40% fewer FLOPs per pixel, but
             measurably worse picking, benchmarks/RESULTS.md "Model choice")
    head conv3x3 (c_0 → 1), zero-initialised so that an untrained network outputs score 0
    (Tweedie then returns its input unchanged).

No attention and no data-dependent control flow, so the module traces with
`torch.compile(fullgraph=True)` and runs in `channels_last` memory format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

DownsampleKind = Literal["conv", "avgpool"]
UpsampleKind = Literal["lowres", "highres"]


@dataclass(frozen=True)
class UNetConfig:
    """Width and depth of a `ScoreUNet`.

    Attributes:
        base_channels: channels of the first level.
        channel_multipliers: one entry per resolution level; level i has
            base_channels · channel_multipliers[i] channels. Input sizes must be multiples
            of 2**(levels − 1).
        blocks_per_level: residual blocks per level, in the encoder and in the decoder.
        norm_groups: GroupNorm groups in every residual block; 0 means no normalisation.
            Every level's channel count must be divisible by it.
        downsample: "conv" (3×3 convolution, stride 2) or "avgpool" (2×2 average pooling).
        upsample: "lowres" (3×3 convolution to the finer level's channels, then nearest
            ×2) or "highres" (nearest ×2, then a 3×3 convolution keeping the channels).
        noise_unit_input: the network sees each micrograph divided by its noise std σ̂
            (unit noise: the signal's amplitude tells the signal-to-noise ratio, so one
            network serves every noise level) and returns the score of that image; False:
            it sees the normalised micrograph itself (`streamdenoise.model.inference`).
    """

    base_channels: int = 32
    channel_multipliers: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    norm_groups: int = 8
    downsample: DownsampleKind = "conv"
    upsample: UpsampleKind = "highres"
    noise_unit_input: bool = False

    def __post_init__(self) -> None:
        # Accept a list (as read back from JSON or a model file) and store a tuple.
        object.__setattr__(self, "channel_multipliers", tuple(self.channel_multipliers))
        for name in ("base_channels", "blocks_per_level", "norm_groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"UNetConfig.{name} must be an int, got {value!r}")
        if self.base_channels < 1:
            raise ValueError(f"UNetConfig.base_channels must be >= 1, got {self.base_channels}")
        if self.blocks_per_level < 1:
            raise ValueError(
                f"UNetConfig.blocks_per_level must be >= 1, got {self.blocks_per_level}"
            )
        if self.norm_groups < 0:
            raise ValueError(f"UNetConfig.norm_groups must be >= 0, got {self.norm_groups}")
        if not self.channel_multipliers or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1
            for m in self.channel_multipliers
        ):
            raise ValueError(
                "UNetConfig.channel_multipliers must be a non-empty sequence of ints >= 1, "
                f"got {self.channel_multipliers!r}"
            )
        if not isinstance(self.noise_unit_input, bool):
            raise ValueError(
                f"UNetConfig.noise_unit_input must be a bool, got {self.noise_unit_input!r}"
            )
        if self.downsample not in ("conv", "avgpool"):
            raise ValueError(
                f"UNetConfig.downsample must be 'conv' or 'avgpool', got {self.downsample!r}"
            )
        if self.upsample not in ("lowres", "highres"):
            raise ValueError(
                f"UNetConfig.upsample must be 'lowres' or 'highres', got {self.upsample!r}"
            )
        if self.norm_groups:
            for channels in self.channels:
                if channels % self.norm_groups:
                    raise ValueError(
                        f"UNetConfig: {channels} channels are not divisible by "
                        f"norm_groups={self.norm_groups}"
                    )

    @property
    def levels(self) -> int:
        """Number of resolution levels."""
        return len(self.channel_multipliers)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel count of each level."""
        return tuple(self.base_channels * m for m in self.channel_multipliers)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able dict (lists, not tuples)."""
        out = asdict(self)
        out["channel_multipliers"] = list(self.channel_multipliers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"UNetConfig: unknown keys {unknown}")
        return cls(**data)


def _norm(channels: int, groups: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if groups else nn.Identity()


class _ResBlock(nn.Module):
    """conv3x3 → norm → SiLU → conv3x3 → norm, plus a (1×1 if needed) skip, then SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm1 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.skip: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) → (B, C_out, H, W)."""
        h = F.silu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.silu(h + self.skip(x))


class _Upsample(nn.Module):
    """×2 upsampling with a 3×3 convolution at the coarse ("lowres") or fine ("highres")
    resolution; "highres" keeps the channel count."""

    def __init__(self, in_channels: int, out_channels: int, kind: UpsampleKind) -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(
            in_channels, out_channels if kind == "lowres" else in_channels, 3, padding=1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) → (B, C_out, 2H, 2W)."""
        if self.kind == "lowres":
            return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))

    @property
    def out_channels(self) -> int:
        """Channels of the upsampled output."""
        return self.conv.out_channels


def _downsample(channels: int, kind: DownsampleKind) -> nn.Module:
    if kind == "conv":
        return nn.Conv2d(channels, channels, 3, stride=2, padding=1)
    return nn.AvgPool2d(2)


class ScoreUNet(nn.Module):
    """Score network s_θ(y) for normalised micrographs (see the module docstring).

    Input (B, 1, H, W) with H and W multiples of `size_multiple`; output the score
    (B, 1, H, W) in normalised units.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else UNetConfig()
        cfg = self.config
        ch = cfg.channels
        groups = cfg.norm_groups

        self.stem = nn.Conv2d(1, ch[0], 3, padding=1)
        self.encoder = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = ch[0]
        for i, c in enumerate(ch):
            blocks = [
                _ResBlock(previous if j == 0 else c, c, groups) for j in range(cfg.blocks_per_level)
            ]
            self.encoder.append(nn.Sequential(*blocks))
            previous = c
            if i < cfg.levels - 1:
                self.downsamplers.append(_downsample(c, cfg.downsample))
        self.bottleneck = _ResBlock(ch[-1], ch[-1], groups)

        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(cfg.levels - 1)):
            upsample = _Upsample(previous, ch[i], cfg.upsample)
            self.upsamplers.append(upsample)
            blocks = [
                _ResBlock(upsample.out_channels + ch[i] if j == 0 else ch[i], ch[i], groups)
                for j in range(cfg.blocks_per_level)
            ]
            self.decoder.append(nn.Sequential(*blocks))
            previous = ch[i]

        self.head = nn.Conv2d(ch[0], 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def noise_unit_input(self) -> bool:
        """Whether inputs are micrographs divided by their noise std (`UNetConfig`)."""
        return self.config.noise_unit_input

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (2**(levels − 1))."""
        return 2 ** (self.config.levels - 1)

    @property
    def feature_dim(self) -> int:
        """Length C of `bottleneck_features` (channels of the last level)."""
        return self.config.channels[-1]

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, 1, H, W) → bottleneck (B, C, H/m, W/m) and the encoder outputs of levels < L−1."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"ScoreUNet expects (B, 1, H, W), got {tuple(x.shape)}")
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(
                f"ScoreUNet: height and width must be multiples of {m}, got {tuple(x.shape[-2:])}"
            )
        h = self.stem(x)
        skips: list[torch.Tensor] = []
        for i, level in enumerate(self.encoder):
            h = level(h)
            if i < len(self.downsamplers):
                skips.append(h)
                h = self.downsamplers[i](h)
        return self.bottleneck(h), skips

    def bottleneck_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global average of the bottleneck activations: (B, 1, H, W) → (B, C).

        C = `feature_dim`. Used for reference-guided retrieval (METHOD §3).
        """
        bottleneck, _ = self._encode(x)
        return bottleneck.mean(dim=(-2, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score ∇_y log p(y): (B, 1, H, W) normalised image → (B, 1, H, W), 1/intensity."""
        h, skips = self._encode(x)
        for upsample, level, skip in zip(
            self.upsamplers, self.decoder, reversed(skips), strict=True
        ):
            h = level(torch.cat([upsample(h), skip], dim=1))
        return self.head(h)
