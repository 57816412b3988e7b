r"""DeepSphere's Chebyshev graph convolution on HEALPix sphere tensors ``[B, N, C]``.

:class:`ChebGraph` holds one DeepSphere graph (:class:`utils.structures.DeepSphereGraph`) as
tensors on the model's device; :class:`SphereChebConv` runs
:class:`torch_geometric.nn.ChebConv` on a batch of sphere tensors over that graph.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor
from torch_geometric.nn import ChebConv

from utils.structures import DeepSphereGraph, load_deepsphere_graph

__all__ = ["ChebGraph", "SphereChebConv"]


class ChebGraph(torch.nn.Module):
    r"""A DeepSphere graph of one ``(healpix_res, patch_res)`` pair, as torch buffers.

    Nodes are the HEALPix pixels in NESTED order: the :math:`4^{pr}` pixels of a patch
    (patch-local indices, graph cut at the patch border, the same edges for every patch) or the
    :math:`12 \cdot 4^{hr}` pixels of the whole sphere (``patch_res < 0``). Edge weights are
    shared by all graphs (:math:`P = 1`: identity weights, or the whole sphere) or given per
    patch (:math:`P = 12 \cdot 4^{hr - pr}`: gaussian weights depend on where the patch lies).

    The buffers are not persistent: they follow the module across devices (``.to``) but stay
    out of state dicts, since they are rebuilt from the structure files.

    Args:
        edge_index (Tensor): symmetric edges ``[2, E]`` (source, target), ``int64``.
        edge_weight (Tensor): edge weights ``[P, E]``, ``float32``.
        num_pixels (int): pixels (nodes) of one graph.
        healpix_res (int, optional): resolution of the map, for reference. (default: ``-1``)
        patch_res (int, optional): patch resolution, negative for the whole sphere.
            (default: ``-1``)
    """

    edge_index: Tensor
    edge_weight: Tensor

    def __init__(
        self,
        edge_index: Tensor,
        edge_weight: Tensor,
        num_pixels: int,
        healpix_res: int = -1,
        patch_res: int = -1,
    ) -> None:
        super().__init__()
        edge_index = torch.as_tensor(edge_index, dtype=torch.int64)
        edge_weight = torch.as_tensor(edge_weight, dtype=torch.float32)
        if edge_weight.dim() == 1:
            edge_weight = edge_weight.unsqueeze(0)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be [2, E], got {list(edge_index.shape)}")
        if edge_weight.dim() != 2 or edge_weight.size(1) != edge_index.size(1):
            raise ValueError(
                f"edge_weight must be [P, {edge_index.size(1)}], got {list(edge_weight.shape)}"
            )
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.register_buffer("edge_weight", edge_weight, persistent=False)
        self.num_pixels = int(num_pixels)
        self.healpix_res = healpix_res
        self.patch_res = patch_res

    @classmethod
    def from_structure(cls, graph: DeepSphereGraph) -> ChebGraph:
        """The torch side of a built or loaded :class:`utils.structures.DeepSphereGraph`."""
        return cls(
            torch.from_numpy(graph.edge_index),
            torch.from_numpy(graph.edge_weight),
            graph.num_nodes,
            graph.healpix_res,
            graph.patch_res,
        )

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, *args, **kwargs) -> ChebGraph:
        """Load the graph file of ``(hr, pr)`` from ``folder``: the arguments, defaults and
        errors of :func:`utils.structures.load_deepsphere_graph`, which raises ``OsloError``
        if the file is missing or does not match."""
        return cls.from_structure(load_deepsphere_graph(folder, *args, **kwargs))

    @property
    def num_edges(self) -> int:
        """Edges ``E`` of one graph (both directions counted)."""
        return self.edge_index.size(1)

    @property
    def num_weight_slices(self) -> int:
        """``P``: 1 if all graphs share their edge weights, else the number of patches."""
        return self.edge_weight.size(0)

    def disjoint_union(
        self, batch_size: int, patch_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Edges and weights of ``batch_size`` disjoint copies of the graph.

        Copy ``b`` has nodes ``[b * num_pixels, (b + 1) * num_pixels)`` and the weights of patch
        ``patch_ids[b]`` (required when :math:`P > 1`, ignored when :math:`P = 1`).

        Returns:
            ``edge_index`` ``[2, batch_size * E]`` and ``edge_weight`` ``[batch_size * E]``.
        """
        device = self.edge_index.device
        offsets = torch.arange(batch_size, device=device) * self.num_pixels
        edge_index = (self.edge_index.unsqueeze(1) + offsets.view(1, -1, 1)).reshape(2, -1)
        if self.num_weight_slices == 1:
            edge_weight = self.edge_weight.expand(batch_size, -1)
        elif patch_ids is None:
            raise ValueError(
                f"this graph has per-patch weights ({self.num_weight_slices} patches): pass "
                f"patch_ids"
            )
        elif patch_ids.shape != (batch_size,):
            raise ValueError(f"patch_ids must be [{batch_size}], got {list(patch_ids.shape)}")
        else:
            edge_weight = self.edge_weight[patch_ids.to(device)]
        return edge_index, edge_weight.reshape(-1)

    def extra_repr(self) -> str:
        return (
            f"healpix_res={self.healpix_res}, patch_res={self.patch_res}, "
            f"num_pixels={self.num_pixels}, num_edges={self.num_edges}, "
            f"num_weight_slices={self.num_weight_slices}"
        )


class SphereChebConv(torch.nn.Module):
    r"""Chebyshev spectral graph convolution on the DeepSphere HEALPix graph.

    From `"Convolutional Neural Networks on Graphs with Fast Localized Spectral Filtering"
    <https://arxiv.org/abs/1606.09375>`_, applied to the sphere by `"DeepSphere: a graph-based
    spherical CNN" <https://arxiv.org/abs/2012.15000>`_:

    .. math::
        \mathbf{X}' = \sum_{k=0}^{K-1} T_k(\tilde{\mathbf{L}}) \, \mathbf{X} \,
        \mathbf{\Theta}_k + \mathbf{b}, \qquad
        \tilde{\mathbf{L}} = \frac{2 \mathbf{L}}{\lambda_{\max}} - \mathbf{I}, \qquad
        \mathbf{L} = \mathbf{I} - \mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}

    with :math:`T_0 = 1`, :math:`T_1(x) = x`, :math:`T_k = 2x T_{k-1} - T_{k-2}`, :math:`W` the
    graph's edge weights and :math:`D` their row sums. The symmetric normalised Laplacian has
    its spectrum in :math:`[0, 2]`, so :math:`\lambda_{\max} = 2` is passed to
    :class:`torch_geometric.nn.ChebConv` (which does the work, kept as the submodule ``cheb``)
    instead of estimating it: :math:`\tilde{\mathbf{L}} = -\mathbf{D}^{-1/2} \mathbf{W}
    \mathbf{D}^{-1/2}`.

    A batch is one disjoint union of :math:`B` copies of the graph (node features
    ``[B * N, C]``), each copy with its patch's edge weights when they differ per patch.

    :math:`T_k(\tilde{\mathbf{L}})` reaches :math:`k` hops, so the filter spans
    :math:`K - 1` hops of the 8-neighbour graph: ``K = 2`` covers one hop (the support of a
    3x3 kernel, or of a one-hop SDPAConv, though isotropic), ``K = 3`` two hops. The default
    ``K = 3`` is DeepSphere's ``kernel_size`` (its polynomial has 3 coefficients), and spans
    the same two hops as an OSLO ``hop=2`` block or a two-hop SDPAConv.

    Args:
        in_channels (int): input channels :math:`C_{in}`.
        out_channels (int): output channels :math:`C_{out}`.
        K (int, optional): number of Chebyshev terms (polynomial degree ``K - 1``).
            (default: ``3``)
        bias (bool, optional): learn an additive bias. (default: ``True``)

    Shapes:
        - **input:** ``x`` :math:`(B, N, C_{in})` in NESTED order, :math:`N` the graph's
          ``num_pixels``; ``graph`` a :class:`ChebGraph`; ``patch_ids`` :math:`(B)`
          ``int64`` patch of each batch element, needed when the graph has per-patch weights;
          ``stride`` (bool, default ``False``)
        - **output:** :math:`(B, N, C_{out})`, or with ``stride`` :math:`(B, N / 4, C_{out})`,
          the pixels ``4p`` that stride pooling keeps (the same interface as
          :class:`~spherical_models.layers.SDPAConv`; a polynomial of the Laplacian has no
          strided form, so the full output is computed and child 0 kept)
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.K = K
        self.cheb = ChebConv(in_channels, out_channels, K, normalization="sym", bias=bias)

    def reset_parameters(self) -> None:
        """Glorot weights and zero bias, as :class:`torch_geometric.nn.ChebConv`."""
        self.cheb.reset_parameters()

    def forward(
        self,
        x: Tensor,
        graph: ChebGraph,
        patch_ids: Tensor | None = None,
        stride: bool = False,
    ) -> Tensor:
        batch, pixels, channels = x.shape
        if pixels != graph.num_pixels:
            raise ValueError(f"input has {pixels} pixels, the graph {graph.num_pixels}")
        edge_index, edge_weight = graph.disjoint_union(batch, patch_ids)
        out = self.cheb(
            x.reshape(batch * pixels, channels),
            edge_index,
            edge_weight.to(x.dtype),
            lambda_max=2.0,
        )
        out = out.view(batch, pixels, self.out_channels)
        return out[:, ::4] if stride else out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, K={self.K})"
