"""Weight transfer from planar CompressAI models: kernel layout, sub-pixel form of the transposed
convolution, and the spherical model reproducing the planar one on a patch."""

import pytest
import torch
from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from torch import nn

from spherical_models.geometry import SphereGeometry
from spherical_models.layers.sdpa_conv import SDPAConv
from spherical_models.models import (
    LayerOptions,
    SphereFactorizedPrior,
    SphereMeanScaleHyperprior,
    SphereScaleHyperprior,
)
from spherical_models.training.weight_transfer import (
    load_planar_state_dict,
    resize_kernel,
    sdpa_weight_from_conv2d,
    subpixel_kernel,
    transfer_planar_weights,
)
from utils.errors import OsloError
from utils.healpix import patch_image_index

PAIRS = [
    (FactorizedPrior, SphereFactorizedPrior),
    (ScaleHyperprior, SphereScaleHyperprior),
    (MeanScaleHyperprior, SphereMeanScaleHyperprior),
]
N, M = 8, 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def to_image(x, patch_res):
    """NESTED patch ``[B, 4**pr, C]`` -> image ``[B, C, 2**pr, 2**pr]``."""
    side = 1 << patch_res
    index = torch.from_numpy(patch_image_index(patch_res).reshape(-1))
    return x[:, index].reshape(x.shape[0], side, side, -1).permute(0, 3, 1, 2)


def to_nested(image):
    """Image ``[B, C, S, S]`` -> NESTED patch ``[B, S*S, C]``."""
    batch, channels, side, _ = image.shape
    index = torch.from_numpy(patch_image_index(side.bit_length() - 1).reshape(-1))
    x = image.new_empty(batch, side * side, channels)
    x[:, index] = image.permute(0, 2, 3, 1).reshape(batch, -1, channels)
    return x


def random_planar(planar_cls):
    """A planar model with random weights, GDN included (its default is the identity-like
    initialisation), saved and read back like a user's checkpoint."""
    model = planar_cls(N, M)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "beta_reparam"):
                module.beta.uniform_(0.5, 1.5)
                module.gamma.uniform_(0.0, 0.2)
    return model.eval()


@pytest.mark.parametrize("hops", [1, 2])
def test_sdpa_weight_from_conv2d_inverts_conv2d_weight(hops):
    conv = SDPAConv(3, 5, num_hops=hops)
    assert torch.equal(sdpa_weight_from_conv2d(conv.conv2d_weight(), hops), conv.weight)


def test_resize_kernel_pads_exactly_and_reports_crops():
    kernel = torch.randn(2, 3, 3, 3)
    padded, exact = resize_kernel(kernel, 5)
    assert exact and torch.equal(padded[..., 1:4, 1:4], kernel)
    assert padded.abs().sum() == kernel.abs().sum()
    cropped, exact = resize_kernel(padded, 3)
    assert exact and torch.equal(cropped, kernel)
    assert not resize_kernel(torch.randn(2, 3, 5, 5), 3)[1]


def test_subpixel_kernel_equals_the_transposed_convolution():
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2, output_padding=1)
    x = torch.randn(2, 4, 6, 6)
    kernel, bias = subpixel_kernel(deconv.weight.detach(), deconv.bias.detach())
    subpixel = nn.functional.pixel_shuffle(nn.functional.conv2d(x, kernel, bias, padding=1), 2)
    torch.testing.assert_close(subpixel, deconv(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("planar_cls,sphere_cls", PAIRS)
def test_single_conv_sphere_model_reproduces_the_planar_model(tmp_path, planar_cls, sphere_cls):
    torch.manual_seed(0)
    planar = random_planar(planar_cls)
    path = tmp_path / "planar.pth.tar"
    torch.save({"epoch": 3, "state_dict": planar.state_dict()}, path)  # examples/train.py form
    sphere = sphere_cls(N, M, LayerOptions(single_conv=True))
    assert transfer_planar_weights(sphere, load_planar_state_dict(path), str(path)) == []
    sphere.eval()
    geometry = SphereGeometry.build(7, 6, sphere.num_levels, num_hops=2)
    image = torch.rand(2, 3, 64, 64) * 4  # larger values give non-trivial latents
    with torch.no_grad():
        y_planar = planar.g_a(image)
        y_sphere = sphere.g_a(to_nested(image), geometry)
        torch.testing.assert_close(to_image(y_sphere, 2), y_planar, atol=1e-5, rtol=1e-5)
        out_planar = planar(image)
        out_sphere = sphere(to_nested(image), geometry)
    torch.testing.assert_close(to_image(out_sphere["x_hat"], 6), out_planar["x_hat"],
                               atol=1e-5, rtol=1e-5)
    for name, likelihoods in out_planar["likelihoods"].items():
        bits_planar = -torch.log2(likelihoods).sum()
        bits_sphere = -torch.log2(out_sphere["likelihoods"][name]).sum()
        torch.testing.assert_close(bits_sphere, bits_planar, rtol=1e-5, atol=1e-3)
    assert -torch.log2(out_planar["likelihoods"]["y"]).sum() > 10  # the check is not vacuous


def test_default_blocks_decode_exactly_and_encode_approximately():
    torch.manual_seed(0)
    planar = random_planar(ScaleHyperprior)
    sphere = SphereScaleHyperprior(N, M)  # two 1-hop convolutions summed per block
    notes = transfer_planar_weights(sphere, planar.state_dict())
    assert notes and all("cropped to 3x3" in note for note in notes)
    assert {note.split(":")[0] for note in notes} == {
        "g_a.0", "g_a.2", "g_a.4", "g_a.6", "h_a.2", "h_a.4",
    }
    geometry = SphereGeometry.build(7, 6, sphere.num_levels, num_hops=1)
    y_hat = torch.round(torch.randn(2, M, 4, 4) * 3)
    with torch.no_grad():
        torch.testing.assert_close(
            to_image(sphere.g_s(to_nested(y_hat), geometry), 6), planar.g_s(y_hat),
            atol=1e-5, rtol=1e-5,
        )


@pytest.mark.parametrize(
    "options,message",
    [
        (LayerOptions(unpool="nearest"), "pixel_shuffle"),
        (LayerOptions(pool="avg_pool"), "-pf stride"),
        (LayerOptions(nonlinearity="RB"), "-nl GDN"),
        (LayerOptions(attention=True), "-at"),
        (LayerOptions(conv="ChebConv"), "SDPAConv"),
    ],
)
def test_options_without_planar_counterpart_are_refused(options, message):
    with pytest.raises(OsloError, match=message):
        transfer_planar_weights(SphereScaleHyperprior(N, M, options),
                                ScaleHyperprior(N, M).state_dict())


def test_mismatched_checkpoints_are_refused(tmp_path):
    with pytest.raises(OsloError, match="N=8, M=12"):
        transfer_planar_weights(SphereScaleHyperprior(N, M), ScaleHyperprior(N, 16).state_dict())
    with pytest.raises(OsloError, match=r"lacks 'h_a\.0\.weight'"):
        transfer_planar_weights(SphereScaleHyperprior(N, M), FactorizedPrior(N, M).state_dict())
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(OsloError, match="cannot read weight-transfer file"):
        load_planar_state_dict(tmp_path / "junk.pth")
    with pytest.raises(OsloError, match="does not exist"):
        load_planar_state_dict(tmp_path / "none.pth")
