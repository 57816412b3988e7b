"""The OSLO convolution (SDPAConv) and its learned up-sampling (SDPAConvTransposed).

Both run one of two execution paths that compute the same function:

* the **gather path**, general: gather every pixel's neighbourhood with one ``index_select``
  and contract it with all direction matrices in one matrix product;
* the **face path**, for ``identity`` weights without mask: directions are fixed face-local
  offsets, so the layer is a ``Conv2d`` (``conv_transpose2d``) on the patch seen as an image,
  or on the 12 base faces padded with their neighbours' pixels (HEALPix face padding).

A 4-D input is in the face layout (:mod:`~spherical_models.layers.face_layout`): the layer is
then the ``Conv2d`` alone (:meth:`SDPAConv.forward_faces`), with no pixel permutation; a
NESTED input on the face path is permuted to faces and back around it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from spherical_models.graph import OsloGraph
from spherical_models.layers.face_layout import from_faces, is_faces, pad_faces, to_faces
from utils.healpix import direction_offsets, num_directions

PATHS = ("auto", "gather", "face")
MASKS = (None, "A", "B")


def kernel_cells(num_hops: int) -> np.ndarray:
    """Row of the SDPA weight for each cell of the ``(2h+1) x (2h+1)`` Conv2d kernel.

    Cell ``(h + dy) * (2h + 1) + (h + dx)`` (row-major ``[ky, kx]``) holds direction
    ``(dx, dy)``, i.e. weight row ``1 + k`` for column ``k`` of the structure, and the centre
    cell holds row 0: ``conv2d`` is a cross-correlation, ``out[y, x] = sum k[h+dy, h+dx]
    in[y+dy, x+dx]``.
    """
    offsets = direction_offsets(num_hops)
    size = 2 * num_hops + 1
    cells = np.zeros(size * size, dtype=np.int64)
    cells[(num_hops + offsets[:, 1]) * size + num_hops + offsets[:, 0]] = np.arange(
        1, len(offsets) + 1
    )
    return cells


def _gather(x: Tensor, flat_index: Tensor, weight: Tensor) -> Tensor:
    """Weighted neighbourhoods ``[B * n, T * C]`` of ``x`` ``[B, m, C]`` (``weight [Bw, n, T]``)."""
    _, n, taps = weight.shape
    channels = x.shape[-1]
    gathered = x.reshape(-1, channels).index_select(0, flat_index)
    gathered.view(-1, n, taps, channels).mul_(weight.unsqueeze(-1))
    return gathered.view(-1, taps * channels)


class _GatherMatmul(torch.autograd.Function):
    """``out[b, i] = sum_t weight[b, i, t] x[b, index[i, t]] @ kernel[t]``, one gather, one matmul.

    The gathered neighbourhoods are ``T`` times the size of ``x``; instead of keeping them alive
    from forward to backward (as autograd would), backward gathers them again and reuses that
    buffer for their gradient, which it scatters back with one ``index_add_``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, weight: Tensor, kernel: Tensor) -> Tensor:
        batch, m, _ = x.shape
        n = index.shape[0]
        offsets = torch.arange(batch, device=x.device).mul_(m).view(-1, 1, 1)
        flat_index = (offsets + index).view(-1)
        ctx.save_for_backward(x, flat_index, weight, kernel)
        out = _gather(x, flat_index, weight) @ kernel.reshape(-1, kernel.shape[-1])
        return out.view(batch, n, -1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None, Tensor | None]:
        x, flat_index, weight, kernel = ctx.saved_tensors
        # autocast may have run the forward product in a lower precision
        grad_out = grad_out.reshape(-1, kernel.shape[-1]).to(kernel.dtype)
        grad_x = grad_kernel = None
        gathered = None
        if ctx.needs_input_grad[3]:
            gathered = _gather(x, flat_index, weight)
            grad_kernel = (gathered.T @ grad_out).view_as(kernel)
        if ctx.needs_input_grad[0]:
            kernel_t = kernel.reshape(-1, kernel.shape[-1]).T
            if gathered is None:
                grad_gathered = grad_out @ kernel_t
            else:
                grad_gathered = torch.mm(grad_out, kernel_t, out=gathered)
            channels = x.shape[-1]
            grad_gathered.view(-1, *weight.shape[1:], channels).mul_(weight.unsqueeze(-1))
            grad_x = x.new_zeros(x.shape).view(-1, channels)
            grad_x.index_add_(0, flat_index, grad_gathered.view(-1, channels))
            grad_x = grad_x.view_as(x)
        return grad_x, None, None, grad_kernel


def gather_conv(x: Tensor, index: Tensor, weight: Tensor, kernel: Tensor) -> Tensor:
    r"""Gather-path convolution, :math:`\mathbf{y}_i = \sum_t w_{it} \mathbf{x}_{j_t(i)}
    \mathbf{W}_t` with :math:`j_t(i)` = ``index[i, t]`` and :math:`w_{it}` = ``weight[b, i, t]``.

    Args:
        x: input ``[B, m, C_in]``.
        index: rows of ``x`` to gather, ``[n, T]`` (the same for every batch element).
        weight: ``[B, n, T]``, or ``[1, n, T]`` shared by the batch.
        kernel: ``[T, C_in, C_out]``.

    Returns:
        ``[B, n, C_out]``.
    """
    return _GatherMatmul.apply(x, index, weight.to(x.dtype), kernel.to(x.dtype))


INIT_RULES = ("conv2d", "oslo")
"""Initialisation rules of the SDPA convolutions (:meth:`_SDPAConvBase.reset_parameters`)."""


def reset_sdpa_parameters(model: torch.nn.Module, rule: str) -> None:
    """Initialise every SDPA convolution of ``model`` (transposed ones too) by ``rule``
    (:data:`INIT_RULES`); the other layers keep theirs."""
    for module in model.modules():
        if isinstance(module, _SDPAConvBase):
            module.reset_parameters(rule)


class _SDPAConvBase(torch.nn.Module):
    """Parameters, initialisation and path choice shared by the SDPA convolutions."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_hops: int = 1,
        bias: bool = True,
        path: str = "auto",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_hops = num_hops
        self.num_directions = num_directions(num_hops)
        self.path = path
        self.weight = torch.nn.Parameter(
            torch.empty(1 + self.num_directions, in_channels, out_channels)
        )
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.register_buffer(
            "kernel_cells", torch.from_numpy(kernel_cells(num_hops)), persistent=False
        )
        self.reset_parameters()

    @property
    def path(self) -> str:
        """Execution path: ``"auto"``, ``"gather"`` or ``"face"``."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        if value not in PATHS:
            raise ValueError(f"path must be one of {PATHS}, got {value!r}")
        self._path = value

    def reset_parameters(self, rule: str = "conv2d") -> None:
        r"""Weight and bias uniform in :math:`\pm 1/\sqrt{\text{fan}_{in}}`.

        ``conv2d`` (default): :math:`\text{fan}_{in} = (1 + K) C_{in}`, ``nn.Conv2d``'s rule
        for the equivalent kernel. ``oslo``: the original code's
        ``kaiming_uniform_(a=sqrt(5))`` on the ``[1 + K, C_in, C_out]`` weight, which PyTorch
        reads as :math:`\text{fan}_{in} = C_{in} C_{out}`: a bound :math:`\sqrt{(1 + K) /
        C_{out}}` times the first (0.19x at 256 channels, 1 hop); the bias takes the same bound
        (PyTorch's rule for its layers; the original's bias rule is not known here).
        """
        if rule not in INIT_RULES:
            raise ValueError(f"unknown initialisation '{rule}' (choose from {INIT_RULES})")
        fan_in = self.weight.shape[0] * self.in_channels
        if rule == "oslo":
            fan_in = self.in_channels * self.out_channels
        bound = 1.0 / math.sqrt(fan_in)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def conv2d_weight(self) -> Tensor:
        """The weight as a Conv2d kernel ``[C_out, C_in, 2h+1, 2h+1]`` (:func:`kernel_cells`)."""
        size = 2 * self.num_hops + 1
        kernel = self.weight.index_select(0, self.kernel_cells).permute(2, 1, 0)
        return kernel.reshape(self.out_channels, self.in_channels, size, size)

    def _check_hops(self, graph: OsloGraph) -> None:
        if graph.num_hops < self.num_hops:
            raise ValueError(f"a {self.num_hops}-hop convolution needs a {self.num_hops}-hop "
                             f"graph, got {graph}")

    def _use_face_path(self, graph: OsloGraph, masked: bool = False) -> bool:
        self._check_hops(graph)
        applies = graph.supports_face_path and not masked
        if self.path == "face" and not applies:
            raise ValueError(f"the face path needs identity weights and no mask, got {graph}")
        return applies and self.path != "gather"

    def _neighbourhood(
        self, graph: OsloGraph, patch_ids: Tensor | None, stride: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Gather table with the centre first: index ``[n, 1+K]``, weight ``[B or 1, n, 1+K]``.

        With ``stride``, only the rows of pixels ``4p`` (``n / 4`` rows, 1 for one pixel).
        """
        k = self.num_directions
        step = 4 if stride else 1
        rows = torch.arange(0, graph.num_pixels, step, device=graph.index.device)
        weight = graph.weight[:, ::step, :k]
        if graph.num_weight_slices > 1:
            if patch_ids is None:
                raise ValueError(f"{graph} has one weight slice per patch: pass patch_ids")
            weight = weight[patch_ids]
        index = torch.cat([rows[:, None], graph.index[::step, :k]], dim=1)
        weight = torch.cat([weight.new_ones(*weight.shape[:2], 1), weight], dim=2)
        return index, weight

    def _check_input(self, x: Tensor, pixels: int) -> None:
        if x.dim() != 3 or x.shape[1] != pixels or x.shape[2] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input [batch, {pixels}, {self.in_channels}], "
                f"got {list(x.shape)}"
            )

    def _check_faces(self, images: Tensor, graph: OsloGraph, side: int) -> None:
        self._check_hops(graph)
        if not graph.supports_face_path:
            raise ValueError(f"the face layout needs identity weights, got {graph}")
        faces = 1 if graph.is_patch else 12
        if (images.shape[0] % faces or images.shape[1] != self.in_channels
                or images.shape[2:] != (side, side)):
            raise ValueError(
                f"{type(self).__name__} expects faces [{faces} * batch, {self.in_channels}, "
                f"{side}, {side}] on {graph}, got {list(images.shape)}"
            )

    def _add_bias(self, out: Tensor) -> Tensor:
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_hops={self.num_hops}, "
            f"bias={self.bias is not None}, path={self.path}"
        )


class SDPAConv(_SDPAConvBase):
    r"""The OSLO directional convolution on HEALPix maps, from the `"OSLO: On-the-Sphere
    Learning for Omnidirectional images and its application to 360-degree image compression"
    <https://doi.org/10.1109/TIP.2022.3202357>`_ paper (IEEE TIP 2022).

    .. math::
        \mathbf{x}^{\prime}_i = \mathbf{x}_i \mathbf{W}_0 + \sum_{k=1}^{K} w_{ik}\,
        \mathbf{x}_{n_k(i)} \mathbf{W}_k + \mathbf{b}

    where :math:`n_k(i)` = ``graph.index[i, k-1]`` is the neighbour of pixel :math:`i` in
    direction :math:`k` (``SW, W, NW, N, NE, E, SE, S``, then the 16 columns of the two-hop
    ring) and :math:`w_{ik}` = ``graph.weight[p, i, k-1]`` its weight (0 for a missing
    neighbour). ``K = 8`` for one hop (like a 3x3 kernel), 24 for two (like 5x5); a one-hop
    layer on a two-hop graph uses the first 8 columns.

    With a mask (for autoregressive context models), only the neighbours :math:`n_k(i) < i`
    in NESTED order are kept (``"A"`` also drops :math:`\mathbf{W}_0`, ``"B"`` keeps it), so
    that output :math:`i` depends on inputs :math:`j < i` (``"A"``) or :math:`j \le i`
    (``"B"``). This is the Z-order of NESTED indices, not CompressAI's raster
    ``MaskedConv2d``.

    With ``stride=True`` (the last convolution of an encoder stage with ``stride`` pooling),
    only the pixels that the pooling keeps are computed: :math:`\mathbf{x}^{\prime}_{4p}` for
    every pixel :math:`p` one resolution down, in coarse NESTED order, i.e. the full output's
    ``[:, 0::4]`` (child 0 of every coarse pixel, at face-local ``(2x, 2y)``) for 4x less work.
    A one-pixel patch (``pr = 0``) keeps its pixel; masks have no strided form.

    Execution paths (the same function, tested equal):

    * **face** (chosen by ``path="auto"`` for ``identity``-weight graphs without mask): on a
      patch, a zero-padded ``Conv2d`` (``padding=num_hops``) on the ``2**pr x 2**pr`` image
      ``image[y, x]``; on the whole sphere, a ``Conv2d`` without padding on the 12 base faces
      framed with their neighbours' pixels (HEALPix face padding, zeros at the 8 three-face
      corners). Kernel cell ``[h + dy, h + dx]`` is :math:`\mathbf{W}_k^\top` for the direction
      of face-local offset ``(dx, dy)``; the centre is :math:`\mathbf{W}_0^\top`
      (:meth:`conv2d_weight`). With ``stride``, the same ``Conv2d`` with ``stride=2``, whose
      output image (or faces) is the coarse level's, read back in coarse NESTED order with the
      graph's ``coarse_image_*`` (``coarse_face_*``) permutations.
    * **gather** (any graph: per-patch ``gaussian`` weights, masks): one ``index_select`` of
      the ``[B * n, (1 + K) C_in]`` neighbourhoods and one matrix product with the stacked
      :math:`\mathbf{W}`; backward recomputes the gather instead of storing it. With
      ``stride``, only the rows ``4p`` of the gather table.

    Args:
        in_channels (int): input channels :math:`C_{in}`.
        out_channels (int): output channels :math:`C_{out}`.
        num_hops (int, optional): 1 (8 directions) or 2 (24). (default: :obj:`1`)
        bias (bool, optional): learn the additive bias :math:`\mathbf{b}`.
            (default: :obj:`True`)
        mask (str, optional): :obj:`None`, :obj:`"A"` or :obj:`"B"`. (default: :obj:`None`)
        path (str, optional): :obj:`"auto"` (face path whenever it applies), :obj:`"gather"`
            or :obj:`"face"` (an error where it does not apply). (default: :obj:`"auto"`)

    Shapes:
        - **input:** ``x`` :math:`(B, n, C_{in})` in NESTED order, :class:`OsloGraph` ``graph``
          with ``n`` pixels (``4**pr`` patch-local pixels, each batch element one patch, or
          ``12 * 4**hr`` for the whole sphere), ``patch_ids`` :math:`(B)` *(needed when the
          graph has per-patch weights)*, ``stride`` (bool, default :obj:`False`)
        - **output:** :math:`(B, n, C_{out})`, or :math:`(B, \lceil n / 4 \rceil, C_{out})`
          with ``stride`` (coarse NESTED order)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_hops: int = 1,
        bias: bool = True,
        mask: str | None = None,
        path: str = "auto",
    ) -> None:
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.mask = mask
        super().__init__(in_channels, out_channels, num_hops, bias, path)

    def forward(
        self,
        x: Tensor,
        graph: OsloGraph,
        patch_ids: Tensor | None = None,
        stride: bool = False,
    ) -> Tensor:
        if stride and self.mask is not None:
            raise ValueError("a masked SDPAConv has no strided form")
        if stride and not graph.is_patch and graph.healpix_res == 0:
            raise ValueError(f"{graph} has no coarser level to stride to")
        if is_faces(x):
            return self.forward_faces(x, graph, stride)
        self._check_input(x, graph.num_pixels)
        if self._use_face_path(graph, masked=self.mask is not None):
            out = self.forward_faces(to_faces(x, graph), graph, stride)
            return from_faces(out, graph, coarse=stride)
        index, weight = self._neighbourhood(graph, patch_ids, stride)
        if self.mask is not None:
            keep = index < index[:, :1]
            keep[:, 0] = self.mask == "B"
            weight = weight * keep
        return self._add_bias(gather_conv(x, index, weight, self.weight))

    def forward_faces(self, images: Tensor, graph: OsloGraph, stride: bool = False) -> Tensor:
        """The convolution in the face layout (:mod:`~spherical_models.layers.face_layout`):
        faces ``[B F, C_in, S, S]`` of ``graph`` -> ``[B F, C_out, S, S]``, or
        ``[B F, C_out, ceil(S / 2), ceil(S / 2)]`` (the level below) with ``stride``."""
        if self.mask is not None:
            raise ValueError("a masked SDPAConv has no face layout (it runs on the gather path)")
        side = 1 << (graph.patch_res if graph.is_patch else graph.healpix_res)
        self._check_faces(images, graph, side)
        kernel = self.conv2d_weight()
        step = 2 if stride else 1
        if graph.is_patch:
            return F.conv2d(images, kernel, self.bias, stride=step, padding=self.num_hops)
        framed = pad_faces(images, *graph.face_layout_padding(self.num_hops))
        return F.conv2d(framed, kernel, self.bias, stride=step)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask}"


class SDPAConvTransposed(_SDPAConvBase):
    r"""Learned up-sampling by the 4 NESTED children, the transposed counterpart of
    :class:`SDPAConv` (`OSLO <https://doi.org/10.1109/TIP.2022.3202357>`_ decoders).

    The input at resolution :math:`r` is placed on child 0 of each pixel at :math:`r + 1`
    (:math:`\mathbf{u}_{4p} = \mathbf{x}_p`, zeros at children 1, 2, 3), then convolved by an
    :class:`SDPAConv` on the fine graph:

    .. math::
        \mathbf{x}^{\prime}_i = [i \bmod 4 = 0]\, \mathbf{x}_{i/4} \mathbf{W}_0 +
        \sum_{k=1}^{K} [n_k(i) \bmod 4 = 0]\, w_{ik}\, \mathbf{x}_{n_k(i)/4} \mathbf{W}_k +
        \mathbf{b}

    Child 0 of pixel ``(x, y)`` sits at face-local ``(2x, 2y)``, so inside a face this is
    ``conv_transpose2d(stride=2, padding=h, output_padding=1)`` with the :class:`SDPAConv`
    kernel flipped in both axes (and in/out channels swapped).

    Execution paths (the same function, tested equal):

    * **face** (``identity`` weights): on a patch, ``conv_transpose2d`` on the coarse
      ``2**(pr-1) x 2**(pr-1)`` image; on the whole sphere, the fine padded faces are
      gathered directly from the coarse input (zeros off child 0, since across face edges child
      0 of the neighbour face need not fall on even positions) and convolved by ``Conv2d``.
    * **gather** (any graph): as :class:`SDPAConv`, gathering ``x`` at ``n_k(i) / 4`` with the
      weights of the neighbours that are not child 0 set to zero.

    Args:
        in_channels (int): input channels :math:`C_{in}`.
        out_channels (int): output channels :math:`C_{out}`.
        num_hops (int, optional): 1 or 2, the fine-level convolution. (default: :obj:`1`)
        bias (bool, optional): learn the additive bias :math:`\mathbf{b}`.
            (default: :obj:`True`)
        path (str, optional): :obj:`"auto"`, :obj:`"gather"` or :obj:`"face"`, as in
            :class:`SDPAConv`. (default: :obj:`"auto"`)

    Shapes:
        - **input:** ``x`` :math:`(B, n / 4, C_{in})` in NESTED order at the coarse
          resolution, ``fine_graph`` the :class:`OsloGraph` of the output level with ``n``
          pixels (patch resolution at least 1), ``patch_ids`` :math:`(B)` *(optional)*
        - **output:** :math:`(B, n, C_{out})`
    """

    def forward(
        self, x: Tensor, fine_graph: OsloGraph, patch_ids: Tensor | None = None
    ) -> Tensor:
        graph = fine_graph
        if graph.patch_res == 0 or (not graph.is_patch and graph.healpix_res == 0):
            raise ValueError(f"{graph} has no coarser level to up-sample from")
        if is_faces(x):
            return self.forward_faces(x, graph)
        self._check_input(x, graph.num_pixels // 4)
        if self._use_face_path(graph):
            out = self.forward_faces(to_faces(x, graph, coarse=True), graph)
            return from_faces(out, graph)
        index, weight = self._neighbourhood(graph, patch_ids)
        weight = weight * (index % 4 == 0)
        return self._add_bias(gather_conv(x, index // 4, weight, self.weight))

    def forward_faces(self, images: Tensor, fine_graph: OsloGraph) -> Tensor:
        """The up-sampling in the face layout: coarse faces ``[B F, C_in, S, S]`` ->
        ``[B F, C_out, 2 S, 2 S]`` on ``fine_graph``."""
        graph = fine_graph
        side = 1 << ((graph.patch_res if graph.is_patch else graph.healpix_res) - 1)
        self._check_faces(images, graph, side)
        kernel = self.conv2d_weight()
        if graph.is_patch:
            return F.conv_transpose2d(
                images, kernel.flip(2, 3).transpose(0, 1), self.bias, stride=2,
                padding=self.num_hops, output_padding=1,
            )
        framed = pad_faces(images, *graph.transposed_padding(self.num_hops))
        return F.conv2d(framed, kernel, self.bias)
