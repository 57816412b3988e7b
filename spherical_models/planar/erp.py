r"""The planar codecs' data: ERP images, their random training crops, the crops' loss and
training step, and the coding of an ERP image, whole or by patches.

The codec's ERP image of an original is ``W x W/2`` (:func:`codec_image`: the original sampled
bilinearly at the ERP pixel centres, :func:`utils.sampling.resample_erp`). For the codec it is
padded (replicate) on the right and at the bottom to a multiple of
:data:`~spherical_models.config.PAD_MULTIPLE`, and the decoded image is cropped back.

Training loss of a batch of crops ``x`` in :math:`[0, 1]`, ``B x 3 x S x S`` (CompressAI's
``RateDistortionLoss``, the bits per pixel of the crops):

.. math::
    L = \frac{\sum_{\text{latents}} \sum -\log_2 p(\hat y)}{B S^2}
        + \lambda \cdot 255^2 \cdot \mathrm{MSE}(x, \hat x)

with the plain MSE, or with each row's squared errors weighted by the area it covers on the
sphere (:func:`latitude_criterion`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from compressai.losses import RateDistortionLoss
from compressai.models import CompressionModel
from torch import Tensor, nn

from spherical_models.config import PAD_MULTIPLE
from spherical_models.planar.coding import code_images, to_uint8
from spherical_models.planar.draws import EpochDraws
from spherical_models.training.epoch import EpochContext, Step
from utils.errors import OsloError
from utils.io import original_names, read_list
from utils.metrics import erp_row_weights
from utils.sampling import resample_erp

# ---------------------------------------------------------------------------------------------
# Images


@dataclass(frozen=True)
class Entry:
    """One entry of a list: its stem (``listname``), the original's name, the original's path,
    and the entry's own file (``path``: step 1's map, read by ``--layout healpix``)."""

    listname: str
    name: str
    original: Path
    path: Path


def list_entries(
    list_file: str | os.PathLike, folder: str | os.PathLike, prefix: str, extension: str
) -> list[Entry]:
    """The entries of a list file (step 1's ``train.txt`` or ``test.txt``; only the names are
    used): their original names (the stems without ``prefix``,
    :func:`utils.io.original_names`) and the paths ``<folder>/<name>.<extension>``;
    :class:`OsloError` if an original is missing."""
    names = original_names(list_file, prefix, "")
    entries = [Entry(path.stem, name, Path(folder) / f"{name}.{extension}", path)
               for path, name in zip(read_list(list_file), names, strict=True)]
    for entry in entries:
        if not entry.original.is_file():
            raise OsloError(f"original '{entry.original}' of '{entry.listname}' (list "
                            f"'{list_file}') does not exist")
    return entries


def codec_image(original: np.ndarray, width: int) -> np.ndarray:
    """The codec's ERP image ``[W/2, W, 3]`` (``uint8``) of an original ``[H0, W0, 3]``."""
    return resample_erp(original, width, width // 2)


def to_tensor(image: np.ndarray) -> Tensor:
    """``uint8`` ``[H, W, 3]`` -> ``float32`` ``[1, 3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)


def pad(x: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """``[B, C, H, W]`` padded on the right and at the bottom (replicate) to multiples of
    ``multiple``: ``[B, C, H', W']``."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="replicate")


# ---------------------------------------------------------------------------------------------
# Training data


def random_crops(images: Tensor, size: int, per_image: int) -> tuple[Tensor, Tensor]:
    """``per_image`` random ``size x size`` crops of each image ``[n, 3, H, W]``, shuffled.

    Rows lie inside the image; columns wrap around (the longitude is periodic). Draws from
    torch's global generator.

    Returns:
        ``(crops, top_rows)``: ``[n * per_image, 3, size, size]``, and the image row of each
        crop's first row ``[n * per_image]``.
    """
    count, (height, width) = len(images) * per_image, images.shape[-2:]
    owner = torch.arange(len(images)).repeat_interleave(per_image)
    top = torch.randint(0, height - size + 1, (count,))
    rows = top[:, None] + torch.arange(size)
    cols = (torch.randint(0, width, (count, 1)) + torch.arange(size)) % width
    crops = images[owner[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [n, s, s, 3]
    order = torch.randperm(count)
    return crops.permute(0, 3, 1, 2)[order], top[order]


@dataclass(eq=False)
class RandomCrops(EpochDraws):
    """The planar models' training data on ERP images (:class:`~spherical_models.planar.draws.
    EpochDraws`): each epoch, ``per_image`` random ``size x size`` crops of every ERP image
    (:func:`random_crops`), in batches of ``batch_size`` consecutive crops
    ``(crops uint8 [B, 3, S, S], top_rows [B])``, shared between processes.

    Args:
        images: the ERP images, ``uint8`` ``[n, 3, H, W]``.
        size: side of the crops.
        per_image: crops of each image and epoch.
        batch_size: crops per batch.
        rank, world_size: this process and the number of processes.
    """

    images: Tensor
    size: int
    per_image: int
    batch_size: int
    rank: int = 0
    world_size: int = 1
    start: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.items = torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        self.tags = torch.empty(0, dtype=torch.long)

    @property
    def num_drawn(self) -> int:
        """Crops of an epoch, over all processes."""
        return len(self.images) * self.per_image

    def draw(self) -> tuple[Tensor, Tensor]:
        """The epoch's crops and their top rows (:func:`random_crops`)."""
        return random_crops(self.images, self.size, self.per_image)

    @property
    def crops(self) -> Tensor:
        """This process's crops of the epoch, ``uint8`` ``[m, 3, S, S]``."""
        return self.items

    @property
    def top_rows(self) -> Tensor:
        """The image row of each crop's first row, ``[m]``."""
        return self.tags


def area_row_weights(height: int) -> Tensor:
    """WS-PSNR's row weights ``cos(latitude)`` of an ERP image of ``height`` rows
    (:func:`utils.metrics.erp_row_weights`) divided by their mean: ``float32`` ``[height]``."""
    weights = torch.from_numpy(erp_row_weights(height)).float()
    return weights / weights.mean()


def latitude_criterion(
    lmbda: float, row_weights: Tensor, top_rows: Tensor, size: int
) -> RateDistortionLoss:
    """The loss of a batch of crops ``[B, 3, S, S]`` (``top_rows`` ``[B]``, from
    :func:`random_crops`) with the sphere's area-weighted MSE::

        MSE_w = mean over b, c, i, j of  w[t_b + i] / mean(w) * (x_hat[b,c,i,j] - x[b,c,i,j])**2

    where ``w[v] / mean(w)`` are ``row_weights`` (:func:`area_row_weights` of the image's
    height): ``w[v] = cos(latitude of row v)`` are WS-PSNR's row weights and ``mean(w)`` their
    mean over the image's rows, so that an error equal on every row weighs as in the plain MSE
    (lambda keeps its meaning). Each pixel's error then counts by the area it covers on the
    sphere, as in WS-PSNR: a crop at a pole costs little distortion, while its rate counts in
    full. The rate term is ``RateDistortionLoss``'s."""
    crop_weights = row_weights[top_rows[:, None] + torch.arange(size)][:, None, :, None]
    criterion = RateDistortionLoss(lmbda=lmbda)
    criterion.metric = WeightedMSE(crop_weights)
    return criterion


class WeightedMSE(nn.Module):
    """``mean(weights * (x_hat - x)**2)``, ``weights`` broadcast to the inputs' shape."""

    def __init__(self, weights: Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return torch.mean(self.weights.to(x.device) * (x_hat - x) ** 2)


@dataclass(frozen=True)
class CropStep:
    """The :class:`~spherical_models.training.epoch.Step` of a planar model on a batch of
    :class:`RandomCrops` (or of :class:`~spherical_models.planar.faces.RandomPatches`, without
    ``row_weights``): the images in [0, 1] on the device, ``model(x)``, and with
    ``row_weights`` (:func:`area_row_weights` of the images' height) the batch's
    :func:`latitude_criterion`, else the epoch's loss (CompressAI's ``RateDistortionLoss``)."""

    lmbda: float
    row_weights: Tensor | None = None

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor],
                 ctx: EpochContext) -> Step:
        crops, top_rows = batch
        x = crops.to(ctx.device).float().div_(255)
        criterion = None if self.row_weights is None else latitude_criterion(
            self.lmbda, self.row_weights, top_rows, crops.shape[-1])
        return Step(x, model, criterion)


# ---------------------------------------------------------------------------------------------
# Coding


def to_patches(x: Tensor, size: int) -> Tensor:
    """``[1, C, H, W]`` (``H`` and ``W`` multiples of ``size``) -> its ``size x size`` patches
    in row-major order, ``[(H / size) * (W / size), C, size, size]``."""
    _, channels, height, width = x.shape
    patches = x.reshape(channels, height // size, size, width // size, size)
    return patches.permute(1, 3, 0, 2, 4).reshape(-1, channels, size, size)


def from_patches(patches: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`to_patches`: ``[n, C, s, s]`` -> ``[1, C, height, width]``."""
    _, channels, size, _ = patches.shape
    x = patches.reshape(height // size, width // size, channels, size, size)
    return x.permute(2, 0, 3, 1, 4).reshape(1, channels, height, width)


@torch.no_grad()
def code_image(
    model: CompressionModel, image: np.ndarray, device: torch.device, patch_size: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Compress and decompress an ERP image ``uint8`` ``[H, W, 3]`` (padded to multiples of
    :data:`~spherical_models.config.PAD_MULTIPLE`, or of ``patch_size``, and cropped back): whole
    (``patch_size`` 0), or as a batch of independent ``patch_size x patch_size`` patches, each
    with its own strings.

    The model must be in evaluation mode with its entropy models updated (``update()``).

    Returns:
        ``(decoded, stats)``: ``uint8`` ``[H, W, 3]`` (``round(x_hat * 255)``), and
        ``theoretical_bits``, ``actual_bits``, ``encode_seconds``, ``decode_seconds``.
    """
    height, width = image.shape[:2]
    x = pad(to_tensor(image), patch_size or PAD_MULTIPLE).to(device)
    padded_shape = x.shape[-2:]
    if patch_size:
        x = to_patches(x, patch_size)
    x_hat, stats = code_images(model, x, device)
    if patch_size:
        x_hat = from_patches(x_hat, *padded_shape)
    decoded = to_uint8(x_hat[0, :, :height, :width])
    return decoded.permute(1, 2, 0).cpu().numpy(), stats
