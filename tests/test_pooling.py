"""SpherePool / SphereUnpool against torch's 2D pooling, interpolation and pixel shuffle."""

import pytest
import torch
import torch.nn.functional as F

from spherical_models.layers.pooling import SpherePool, SphereUnpool
from utils.healpix import patch_image_index

# (blocks, res): one patch of resolution 3, and the whole sphere at resolution 2 (12 faces).
LAYOUTS = [(1, 3), (12, 2)]


def to_images(x: torch.Tensor, res: int) -> torch.Tensor:
    """``[B, blocks * 4**res, C]`` NESTED -> ``[B * blocks, C, 2**res, 2**res]`` images."""
    batch, _, channels = x.shape
    blocks = x.reshape(batch, -1, 4**res, channels)
    index = torch.from_numpy(patch_image_index(res))
    return blocks[:, :, index].permute(0, 1, 4, 2, 3).reshape(-1, channels, 2**res, 2**res)


@pytest.mark.parametrize(("blocks", "res"), LAYOUTS)
@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("avg_pool", lambda image: F.avg_pool2d(image, 2)),
        ("max_pool", lambda image: F.max_pool2d(image, 2)),
        ("stride", lambda image: image[..., ::2, ::2]),
    ],
)
def test_pool_equals_2d_pooling(blocks, res, mode, reference):
    x = torch.randn(3, blocks * 4**res, 5)
    out = SpherePool(mode)(x)
    assert out.shape == (3, blocks * 4 ** (res - 1), 5)
    torch.testing.assert_close(to_images(out, res - 1), reference(to_images(x, res)))


@pytest.mark.parametrize(("blocks", "res"), LAYOUTS)
def test_nearest_unpool_equals_interpolate(blocks, res):
    x = torch.randn(2, blocks * 4**res, 5)
    out = SphereUnpool("nearest")(x)
    assert out.shape == (2, blocks * 4 ** (res + 1), 5)
    expected = F.interpolate(to_images(x, res), scale_factor=2, mode="nearest")
    torch.testing.assert_close(to_images(out, res + 1), expected)


@pytest.mark.parametrize(("blocks", "res"), LAYOUTS)
def test_pixel_shuffle_unpool_equals_pixel_shuffle(blocks, res):
    x = torch.randn(2, blocks * 4**res, 4 * 3)
    out = SphereUnpool("pixel_shuffle")(x)
    assert out.shape == (2, blocks * 4 ** (res + 1), 3)
    expected = torch.nn.PixelShuffle(2)(to_images(x, res))
    torch.testing.assert_close(to_images(out, res + 1), expected)


def test_pool_inverts_unpool():
    x = torch.randn(2, 48, 8)
    torch.testing.assert_close(SpherePool("avg_pool")(SphereUnpool("nearest")(x)), x)
    shuffled = SphereUnpool("pixel_shuffle")(x)
    torch.testing.assert_close(SpherePool("stride")(shuffled), x[..., 0::4])


@pytest.mark.parametrize(
    "layer",
    [
        SpherePool("avg_pool"),
        SpherePool("max_pool"),
        SpherePool("stride"),
        SphereUnpool("nearest"),
        SphereUnpool("pixel_shuffle"),
    ],
)
def test_gradients_flow(layer):
    x = torch.randn(2, 64, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="pooling mode"):
        SpherePool("mean")
    with pytest.raises(ValueError, match="unpooling mode"):
        SphereUnpool("bilinear")
    with pytest.raises(ValueError, match="by 4 children"):
        SpherePool()(torch.zeros(1, 6, 2))
    with pytest.raises(ValueError, match="multiple of 4 channels"):
        SphereUnpool("pixel_shuffle")(torch.zeros(1, 4, 6))
