"""SphereGDN against compressai.layers.GDN on the image layout of patches."""

import pytest
import torch
from compressai.layers import GDN

from spherical_models.layers.gdn import SphereGDN
from utils.healpix import patch_image_index


def randomised(layer: SphereGDN) -> SphereGDN:
    """Give ``layer`` random positive ``beta`` and ``gamma`` (the default gamma is diagonal)."""
    with torch.no_grad():
        channels = layer.channels
        layer.gdn.beta.copy_(layer.gdn.beta_reparam.init(0.5 + torch.rand(channels)))
        gamma = 0.1 * torch.rand(channels, channels)
        layer.gdn.gamma.copy_(layer.gdn.gamma_reparam.init(gamma))
    return layer


@pytest.mark.parametrize("inverse", [False, True])
def test_equals_compressai_gdn_on_images(inverse):
    res, channels = 3, 6
    layer = randomised(SphereGDN(channels, inverse=inverse))
    reference = GDN(channels, inverse=inverse)
    reference.load_state_dict({k.removeprefix("gdn."): v for k, v in layer.state_dict().items()})

    x = torch.randn(4, 4**res, channels)
    index = torch.from_numpy(patch_image_index(res))
    images = x[:, index].permute(0, 3, 1, 2)  # [B, C, 2**res, 2**res]
    out = layer(x)
    assert out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out[:, index].permute(0, 3, 1, 2), reference(images))


def test_state_dict_is_compressai_gdn_under_submodule():
    layer = SphereGDN(5)
    assert set(layer.state_dict()) == {f"gdn.{key}" for key in GDN(5).state_dict()}


def test_reset_parameters_restores_initialisation():
    layer = randomised(SphereGDN(4, gamma_init=0.2))
    layer.reset_parameters()
    fresh = SphereGDN(4, gamma_init=0.2)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(layer.state_dict()[key], value)


def test_gradients_reach_every_parameter():
    layer = randomised(SphereGDN(4))
    x = torch.randn(2, 16, 4, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None
    for name, parameter in layer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
