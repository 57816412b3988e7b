"""The graphs of every resolution level a spherical codec runs on.

A codec whose input is at ``(healpix_res, patch_res)`` goes down one resolution per stage:
level ``l`` is ``(hr - l, pr - l)`` (or the whole sphere at ``hr - l``). The analysis transform
brings ``y`` to level 4 and the hyper-analysis ``z`` to level 6, so a hyperprior model needs
the graphs of levels 0..6 and the factorized prior those of 0..4 (the paper's pairs (10, 8)
down to (4, 2)).
"""

from __future__ import annotations

import os

from torch import nn

from spherical_models.graph import OsloGraph
from spherical_models.layers.cheb_conv import ChebGraph
from utils.errors import OsloError
from utils.healpix import input_pixels
from utils.structures import build_deepsphere_graph, build_oslo_structure, check_resolutions


def check_levels(healpix_res: int, patch_res: int, num_levels: int) -> None:
    """Raise :class:`OsloError` unless ``(healpix_res, patch_res)`` is a valid pair
    (:func:`utils.structures.check_resolutions`; ``patch_res = -1``: whole sphere) with room
    for the ``num_levels - 1`` down-sampling stages of a codec."""
    check_resolutions(healpix_res, patch_res)
    stages = num_levels - 1
    if patch_res < -1:
        raise OsloError(f"patch resolution {patch_res} is below -1 (the whole sphere)")
    if patch_res >= 0 and patch_res - stages < 0:
        raise OsloError(
            f"patch resolution {patch_res} is too small for {stages} down-sampling stages: "
            f"use at least {stages}"
        )
    if healpix_res - stages < 0:
        raise OsloError(
            f"HEALPix resolution {healpix_res} is too small for {stages} down-sampling stages: "
            f"use at least {stages}"
        )


def level_resolutions(
    healpix_res: int, patch_res: int, num_levels: int
) -> list[tuple[int, int]]:
    """``(hr - l, pr - l)`` of levels ``l = 0 .. num_levels - 1`` (``pr = -1``: whole sphere)."""
    return [
        (healpix_res - level, patch_res - level if patch_res >= 0 else -1)
        for level in range(num_levels)
    ]


class SphereGeometry(nn.Module):
    """The graphs of levels ``0 .. num_levels - 1``, indexable as ``geometry[level]``.

    Args:
        graphs: one :class:`OsloGraph` or :class:`ChebGraph` per level, finest first.
    """

    def __init__(self, graphs: list[nn.Module]) -> None:
        super().__init__()
        self.graphs = nn.ModuleList(graphs)

    def __getitem__(self, level: int) -> nn.Module:
        return self.graphs[level]

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def healpix_res(self) -> int:
        """Resolution of the input level."""
        return self.graphs[0].healpix_res

    @property
    def patch_res(self) -> int:
        """Patch resolution of the input level, -1 for the whole sphere."""
        return self.graphs[0].patch_res

    @property
    def num_pixels(self) -> int:
        """Pixels of one input (a patch or the whole sphere)."""
        return input_pixels(self.healpix_res, self.patch_res)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        healpix_res: int,
        patch_res: int,
        num_levels: int,
        conv: str = "SDPAConv",
        num_hops: int = 1,
        weight_type: str = "identity",
        use_euclidean: bool = False,
    ) -> SphereGeometry:
        """Load the structures (``SDPAConv``) or graphs (``ChebConv``) of every level.

        Raises :class:`OsloError` for resolutions without room for the levels
        (:func:`check_levels`), or naming the command to run for a missing level.
        """
        check_levels(healpix_res, patch_res, num_levels)
        if conv == "ChebConv":
            return cls([
                ChebGraph.from_folder(folder, hr, pr, 1, weight_type, use_euclidean)
                for hr, pr in level_resolutions(healpix_res, patch_res, num_levels)
            ])
        return cls([
            OsloGraph.from_folder(folder, hr, pr, num_hops, weight_type)
            for hr, pr in level_resolutions(healpix_res, patch_res, num_levels)
        ])

    @classmethod
    def build(
        cls,
        healpix_res: int,
        patch_res: int,
        num_levels: int,
        conv: str = "SDPAConv",
        num_hops: int = 1,
        weight_type: str | None = None,
        use_euclidean: bool = False,
    ) -> SphereGeometry:
        """Build the graphs in memory instead of loading them (the same checks and graphs as
        :meth:`from_folder`)."""
        check_levels(healpix_res, patch_res, num_levels)
        if conv == "ChebConv":
            return cls([
                ChebGraph.from_structure(
                    build_deepsphere_graph(hr, pr, 1, weight_type or "gaussian", use_euclidean)
                )
                for hr, pr in level_resolutions(healpix_res, patch_res, num_levels)
            ])
        return cls([
            OsloGraph(build_oslo_structure(hr, pr, num_hops, weight_type or "identity"))
            for hr, pr in level_resolutions(healpix_res, patch_res, num_levels)
        ])
