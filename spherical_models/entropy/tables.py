r"""Deterministic entropy parameters: the CDF tables and the hyper-synthesis computed in float64
on one CPU thread, so that an encoder and a decoder on different machines agree to the bit.

rANS decoding needs the decoder's entropy parameters (the CDF tables, and the scale *indexes*
of ``y``) to equal the encoder's to the bit: a probability whose last bit differs can move an
entry of a 16-bit quantised CDF, and a float32 scale on the other side of a scale-table
threshold selects another CDF, after which the rest of the string decodes into garbage. In
float32, sums depend on the thread count and the device. Computed in float64 on one thread
and then rounded, the tables and indexes are the same on every machine (a threshold crossing
becomes about 1e9 times less likely than in float32). Used by
:meth:`spherical_models.models.SphereCompressionModel.set_deterministic`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run torch's CPU operations on one thread inside the block (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def update_gaussian_float64(gc: GaussianConditional) -> None:
    """``GaussianConditional.update`` (CompressAI 1.2.8) computed in float64 instead of float32:
    the CDF tables of the scales of ``gc.scale_table`` (CPU)."""
    table = gc.scale_table.to(torch.float64)
    multiplier = -float(gc._standardized_quantile(gc.tail_mass / 2))
    pmf_center = torch.ceil(table * multiplier).int()
    pmf_length = 2 * pmf_center + 1
    max_length = int(torch.max(pmf_length).item())
    samples = torch.abs(torch.arange(max_length).int() - pmf_center[:, None]).to(torch.float64)
    scales = table.unsqueeze(1)
    upper = gc._standardized_cumulative((0.5 - samples) / scales)
    lower = gc._standardized_cumulative((-0.5 - samples) / scales)
    pmf = upper - lower
    tail_mass = 2 * lower[:, :1]
    gc._quantized_cdf = gc._pmf_to_cdf(pmf, tail_mass, pmf_length, max_length)
    gc._offset = -pmf_center
    gc._cdf_length = pmf_length + 2


def deterministic_scale_table(
    low: float = 0.11, high: float = 256.0, levels: int = 64
) -> list[float]:
    """CompressAI's default scale table ``exp(linspace(log low, log high, levels))``, computed
    with Python floats (IEEE float64, correctly rounded ``log``/``exp`` in practice) and rounded
    to float32 values."""
    step = (math.log(high) - math.log(low)) / (levels - 1)
    table = [math.exp(math.log(low) + i * step) for i in range(levels)]
    return torch.tensor(table, dtype=torch.float64).float().tolist()


def run_float64(
    cache: dict, module: nn.Module, x: Tensor, geometry, patch_ids: Tensor | None
) -> Tensor:
    """``module(x, geometry, patch_ids)`` on the CPU in float64 on one thread, with a float64
    copy of ``module`` and ``geometry`` kept in ``cache``; returns a float64 CPU tensor.

    The copy is remade when ``module``'s parameters change (their storage or version).
    """
    stamp = tuple((p.data_ptr(), p._version) for p in module.parameters())
    key = (id(module), id(geometry))
    if key not in cache or cache[key][0] != stamp:
        cache[key] = (
            stamp,
            copy.deepcopy(module).to("cpu", torch.float64),
            copy.deepcopy(geometry).to("cpu", torch.float64),
        )
    _, module64, geometry64 = cache[key]
    ids = None if patch_ids is None else patch_ids.cpu()
    with one_cpu_thread(), torch.no_grad():
        return module64(x.detach().to("cpu", torch.float64), geometry64, ids)


def update_float64(
    model: nn.Module, scale_table: list[float], force: bool = False,
    update_quantiles: bool = False,
) -> bool:
    """CompressAI's ``CompressionModel.update`` computed on the CPU on one thread in float64:
    the CDF tables of every ``EntropyBottleneck`` (in float64) and ``GaussianConditional``
    (:func:`update_gaussian_float64` on ``scale_table``) of ``model``, copied back where each
    module is. Returns whether any table was updated."""
    updated = False
    with one_cpu_thread(), torch.no_grad():
        for module in model.modules():
            if isinstance(module, EntropyBottleneck):
                if module._offset.numel() > 0 and not force:
                    continue
                work = copy.deepcopy(module).to("cpu", torch.float64)
                work.update(force=True, update_quantiles=update_quantiles)
                if update_quantiles:
                    module.quantiles.data.copy_(work.quantiles.data)
            elif isinstance(module, GaussianConditional):
                if module._offset.numel() > 0 and not force:
                    continue
                work = copy.deepcopy(module).to("cpu")
                work.scale_table = work._prepare_scale_table(scale_table)
                update_gaussian_float64(work)
            else:
                continue
            device = module._offset.device
            for name in ("_offset", "_quantized_cdf", "_cdf_length"):
                setattr(module, name, getattr(work, name).to(device))
            if isinstance(module, GaussianConditional):
                module.scale_table = work.scale_table.to(device, module.scale_bound.dtype)
            updated = True
    return updated
