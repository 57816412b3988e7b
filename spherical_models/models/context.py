r"""Autoregressive context models on HEALPix maps: the causal decoding schedule and the masked
convolution evaluated at a few rows.

A context model (Minnen et al., `"Joint Autoregressive and Hierarchical Priors for Learned
Image Compression" <https://arxiv.org/abs/1809.02736>`_) predicts the entropy parameters of
latent pixel :math:`i` from the pixels decoded before it. On the sphere the decoding order is
the NESTED order, and the context is an :class:`~spherical_models.layers.SDPAConv` with mask
``"A"``: it reads, among the neighbours :math:`n_k(i)` of pixel :math:`i`, only the *causal*
ones,

.. math::
    \mathcal{C}(i) = \{\, n_k(i) \;:\; n_k(i) < i,\ w_{ik} \neq 0 \,\}.

Decoding pixel after pixel is correct but takes :math:`n` sequential steps. Pixels that do not
depend on each other, directly or through a chain of causal neighbours, can be decoded together.
The *dependency depth*

.. math::
    d(i) = \begin{cases} 0 & \mathcal{C}(i) = \emptyset \\
    1 + \max_{j \in \mathcal{C}(i)} d(j) & \text{otherwise} \end{cases}

is the length of the longest causal chain ending at :math:`i`. Since :math:`j \in
\mathcal{C}(i)` implies :math:`d(j) < d(i)`, the pixels of depth :math:`t` only read pixels of
depth :math:`< t`: decoding the groups :math:`\{i : d(i) = t\}` for :math:`t = 0, 1, \dots` in
turn, all pixels of a group at once, respects every dependency and takes :math:`1 + \max_i d(i)`
sequential steps instead of :math:`n`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from spherical_models.graph import OsloGraph
from spherical_models.layers.sdpa_conv import SDPAConv, gather_conv


def causal_neighbours(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    r"""Where the neighbours are causal: ``keep[i, k]`` is :math:`n_k(i) < i` and
    :math:`w_{ik} \neq 0`.

    Args:
        index: neighbour table ``[n, K]`` (``index[i, k]`` = :math:`n_k(i)`, NESTED order).
        weight: neighbour weights ``[n, K]``, or ``[P, n, K]`` with one slice per patch; a
            neighbour counts where its weight is non-zero in any slice, so that one schedule
            serves every patch.

    Returns:
        ``bool`` ``[n, K]``.
    """
    index = np.asarray(index)
    present = np.asarray(weight) != 0
    if present.ndim == 3:
        present = present.any(axis=0)
    return present & (index < np.arange(len(index))[:, None])


def causal_depth(index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    r"""Dependency depth :math:`d(i)` of every pixel (module docstring), ``int64`` ``[n]``.

    :math:`d` is the fixed point of the relaxation :math:`d \leftarrow [\mathcal{C}(i) \neq
    \emptyset]\,(1 + \max_{j \in \mathcal{C}(i)} d(j))` started from 0; instead of iterating
    it over all pixels until it stops changing (:math:`O(n K \max d)` work), the depths are
    assigned level by level (Kahn's topological sort): the pixels whose causal neighbours all
    have a depth get the next one, each level one vectorised step over the edges leaving the
    previous level, :math:`O(n K)` work in all.

    Args:
        index: neighbour table ``[n, K]`` in NESTED order.
        weight: neighbour weights ``[n, K]`` or ``[P, n, K]``, see :func:`causal_neighbours`.
    """
    index = np.asarray(index, dtype=np.int64)
    n = len(index)
    target, column = np.nonzero(causal_neighbours(index, weight))
    source = index[target, column]  # edge source -> target: target reads source
    order = np.argsort(source, kind="stable")
    target = target[order]
    first_edge = np.searchsorted(source[order], np.arange(n + 1))  # edges of source s
    waiting = np.bincount(target, minlength=n)  # causal neighbours without a depth yet
    depth = np.full(n, -1, dtype=np.int64)
    ready = np.flatnonzero(waiting == 0)
    level = 0
    while ready.size:
        depth[ready] = level
        counts = first_edge[ready + 1] - first_edge[ready]
        starts = np.repeat(first_edge[ready] - np.cumsum(counts) + counts, counts)
        reached, hits = np.unique(target[starts + np.arange(counts.sum())], return_counts=True)
        waiting[reached] -= hits
        ready = reached[waiting[reached] == 0]
        level += 1
    return depth


def depth_groups(depth: np.ndarray) -> list[np.ndarray]:
    """Pixels of each depth ``0 .. max(depth)``, each group in increasing NESTED order."""
    order = np.argsort(depth, kind="stable")
    return np.split(order, np.cumsum(np.bincount(depth))[:-1])


def decoding_groups(conv: SDPAConv, graph: OsloGraph) -> list[Tensor]:
    """The decoding schedule of the context model ``conv`` (mask ``"A"``) on ``graph``.

    The groups of :func:`depth_groups` for the causal neighbours within ``conv``'s reach (the
    first ``conv.num_directions`` columns of the graph), as ``int64`` tensors on the graph's
    device. Encoder and decoder must follow the same schedule: it depends only on the graph
    and on ``conv.num_hops``.
    """
    if conv.mask != "A":
        raise ValueError(f"a decoding schedule needs a mask 'A' convolution, got {conv}")
    _check_reach(conv, graph)
    k = conv.num_directions
    depth = causal_depth(graph.index[:, :k].cpu().numpy(), graph.weight[..., :k].cpu().numpy())
    device = graph.index.device
    return [torch.from_numpy(rows).to(device) for rows in depth_groups(depth)]


def masked_rows(
    conv: SDPAConv,
    x: Tensor,
    graph: OsloGraph,
    rows: Tensor,
    patch_ids: Tensor | None = None,
) -> Tensor:
    r"""The output of ``conv(x, graph, patch_ids)`` at ``rows`` only, honouring the mask.

    For :math:`i` = ``rows[r]``:

    .. math::
        \mathbf{o}_{r} = [\text{mask} \neq A]\, \mathbf{x}_i \mathbf{W}_0 +
        \sum_{k=1}^{K} m_{ik}\, w_{ik}\, \mathbf{x}_{n_k(i)} \mathbf{W}_k + \mathbf{b},
        \qquad m_{ik} = [n_k(i) < i] \text{ with a mask, } 1 \text{ without,}

    one gather of the ``R`` neighbourhoods and one matrix product with the weight
    ``[1 + K, C_in, C_out]`` (the centre row left out for mask ``"A"``):
    :math:`O(B R K C_{in} C_{out})` work instead of :math:`O(B n K C_{in} C_{out})`.

    Args:
        conv: the convolution whose weights, mask and reach are used.
        x: input ``[B, n, C_in]`` in NESTED order (rows that the mask drops are never read
            with a non-zero weight).
        graph: the :class:`OsloGraph` of ``x``'s resolution.
        rows: ``int64`` ``[R]``, the output rows.
        patch_ids: ``[B]`` patch of each batch element, for graphs with per-patch weights.

    Returns:
        ``[B, R, C_out]``.
    """
    _check_reach(conv, graph)
    k = conv.num_directions
    index = graph.index[rows, :k]
    weight = graph.weight[:, rows, :k]
    if graph.num_weight_slices > 1:
        if patch_ids is None:
            raise ValueError(f"{graph} has one weight slice per patch: pass patch_ids")
        weight = weight[patch_ids]
    if conv.mask is not None:
        weight = weight * (index < rows[:, None])
    kernel = conv.weight
    if conv.mask == "A":
        kernel = kernel[1:]
    else:
        index = torch.cat([rows[:, None], index], dim=1)
        weight = torch.cat([weight.new_ones(*weight.shape[:2], 1), weight], dim=2)
    out = gather_conv(x, index, weight, kernel)
    return out if conv.bias is None else out + conv.bias


def _check_reach(conv: SDPAConv, graph: OsloGraph) -> None:
    if graph.num_hops < conv.num_hops:
        raise ValueError(
            f"a {conv.num_hops}-hop context model needs a {conv.num_hops}-hop graph, got {graph}"
        )
