"""ScoreUNet: shapes, zero-init identity, bottleneck features, config round trip."""

from __future__ import annotations

import pytest
import torch

from streamdenoise.model.unet import ScoreUNet, UNetConfig

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2, 2), blocks_per_level=1, norm_groups=4)


def _randomised(model: ScoreUNet, seed: int = 0) -> ScoreUNet:
    """Give the zero-initialised head random weights so the output is not trivially 0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(0.1 * torch.randn(model.head.weight.shape, generator=gen))
        model.head.bias.fill_(0.01)
    return model


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (2, 1, 48, 80), (3, 1, 4, 12), (1, 1, 64, 36)])
def test_output_shape_matches_input(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = _randomised(ScoreUNet(TINY)).eval()
    with torch.no_grad():
        out = model(torch.randn(shape))
    assert out.shape == shape
    assert torch.isfinite(out).all()
    assert out.abs().max() > 0


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_size_multiple_follows_levels(levels: int) -> None:
    cfg = UNetConfig(base_channels=4, channel_multipliers=(1,) * levels, norm_groups=2)
    model = ScoreUNet(cfg)
    assert model.size_multiple == 2 ** (levels - 1)
    m = model.size_multiple
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 3 * m, 5 * m)).shape == (1, 1, 3 * m, 5 * m)


def test_rejects_sizes_that_are_not_multiples() -> None:
    model = ScoreUNet(TINY)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 32, 30))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(torch.zeros(1, 2, 32, 32))


def test_untrained_model_outputs_exactly_zero_score() -> None:
    torch.manual_seed(1)
    model = ScoreUNet(TINY).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 48))
    assert torch.equal(out, torch.zeros_like(out))


def test_bottleneck_features_shape_and_dependence_on_input() -> None:
    torch.manual_seed(2)
    model = ScoreUNet(TINY).eval()
    x = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        f = model.bottleneck_features(x)
        f_other = model.bottleneck_features(x.flip(-1) * 2 + 1)
    assert f.shape == (5, model.feature_dim) == (5, 16)
    assert not torch.allclose(f, f_other)


@pytest.mark.parametrize(("downsample", "upsample"), [("conv", "lowres"), ("avgpool", "highres")])
def test_channels_last_matches_contiguous(downsample: str, upsample: str) -> None:
    torch.manual_seed(3)
    cfg = UNetConfig(
        base_channels=8,
        channel_multipliers=(1, 2),
        norm_groups=0,
        downsample=downsample,
        upsample=upsample,
    )
    model = _randomised(ScoreUNet(cfg)).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_config_round_trips_through_a_plain_dict() -> None:
    cfg = UNetConfig(
        base_channels=16, channel_multipliers=(1, 2, 4), blocks_per_level=2, downsample="avgpool"
    )
    data = cfg.to_dict()
    assert data["channel_multipliers"] == [1, 2, 4]
    assert all(isinstance(v, int | str | list) for v in data.values())
    assert UNetConfig.from_dict(data) == cfg
    assert UNetConfig.from_dict({}) == UNetConfig()
    lowres = UNetConfig(upsample="lowres")
    assert UNetConfig.from_dict(lowres.to_dict()) == lowres


@pytest.mark.parametrize("upsample", ["lowres", "highres"])
def test_both_upsampling_kinds_shape_and_cost(upsample: str) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    cfg = UNetConfig(
        base_channels=16, channel_multipliers=(1, 2, 4), norm_groups=0, upsample=upsample
    )
    model = _randomised(ScoreUNet(cfg)).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(x)
    assert out.shape == x.shape
    flops_per_pixel = counter.get_total_flops() / x.numel()
    # Σ over layers of 2·k²·C_in·C_out per output pixel, scaled by each level's area.
    assert flops_per_pixel == {"lowres": 69952, "highres": 112448}[upsample]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_channels": 0},
        {"channel_multipliers": ()},
        {"channel_multipliers": (1, 0)},
        {"blocks_per_level": 0},
        {"norm_groups": 3},  # 32 channels not divisible by 3
        {"downsample": "maxpool"},
        {"upsample": "bilinear"},
        {"base_channels": 8.0},
    ],
)
def test_invalid_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        UNetConfig(**kwargs)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        UNetConfig.from_dict({"base_channels": 8, "attention": True})


@pytest.mark.slow
def test_traces_as_one_graph_with_torch_compile() -> None:
    torch.manual_seed(4)
    model = _randomised(ScoreUNet(TINY)).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
