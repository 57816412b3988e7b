"""Where a study's files are: its input images and the folders and files it writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.rd.methods import Method
from experiments.rd.presets import Preset


@dataclass(frozen=True)
class Inputs:
    """The images of a study.

    Attributes:
        image_dir: the ERP images; the test images when ``train_image_dir`` is given, else
            split by step 1 with the preset's ratios.
        image_ext: their extension (and that of ``train_image_dir``'s).
        train_image_dir: a separate folder of training images, or :obj:`None`.
        sphere_points: S-PSNR's points.
        train_sources: the folders whose images ``train_image_dir`` links
            (:func:`training_folder`), or ``(train_image_dir,)``.
    """

    image_dir: str
    image_ext: str
    train_image_dir: str | None
    sphere_points: str
    train_sources: tuple[str, ...] = ()


def training_folder(folders: Sequence[str], root: Path, image_ext: str) -> str:
    """The one folder of training images of the study: ``folders[0]`` if there is one, else
    ``root/train_images`` with a link ``<folder name>_<file name>`` to every ``*.image_ext``
    image of every folder (steps 1 and 3 read one folder)."""
    if len(folders) == 1:
        return folders[0]
    merged = root / "train_images"
    merged.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for image in sorted(Path(folder).glob(f"*.{image_ext}")):
            link = merged / f"{Path(folder).name}_{image.name}"
            if not link.exists():
                link.symlink_to(image.resolve())
    return str(merged)


@dataclass(frozen=True)
class Layout:
    """The folders and files of a study in ``root``; ``separate_training``: the training
    images come from their own folder (two runs of step 1, in ``data/train`` and
    ``data/test``), else from step 1's split in ``data``; ``seeds``: the training seeds of
    every learned point (its folder gets a ``_seed<s>`` suffix when there are several);
    ``results_name``: the folder of the report inside ``root``."""

    root: Path
    separate_training: bool = False
    seeds: tuple[int, ...] = (0,)
    results_name: str = "results"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def data_list(self, name: str) -> Path:
        """Step 1's list ``train``, ``validation`` or ``test``."""
        folder = self.data / ("test" if name == "test" else "train") \
            if self.separate_training else self.data
        return folder / f"{name}.txt"

    @property
    def structures(self) -> Path:
        return self.root / "structures"

    @property
    def classic(self) -> Path:
        return self.root / "classic"

    @property
    def results(self) -> Path:
        return self.root / self.results_name

    def _run_folder(self, method: Method, name: str, seed: int) -> Path:
        suffix = f"_seed{seed}" if len(self.seeds) > 1 else ""
        return self.root / "runs" / method.run_key / f"{name}{suffix}"

    def run(self, method: Method, lmbda: float, seed: int = 0) -> Path:
        """Folder of the training run of a learned method at ``lmbda`` with ``seed``
        (``lambda<l>``, or ``lambda<l>_seed<s>`` when the study has several seeds)."""
        return self._run_folder(method, f"lambda{lmbda:g}", seed)

    def base(self, method: Method, seed: int = 0) -> Path:
        """Folder of the base training of a learned method (``Preset.finetune_epochs``),
        whose weights start every point of its curve (``base``, ``base_seed<s>``)."""
        return self._run_folder(method, "base", seed)

    def rd_csv(self, method: Method, point: tuple[float, int] | str, seed: int = 0) -> Path:
        """The RD CSV (one point) of a learned method's run or a classic codec's quality."""
        if method.kind == "classic":
            return self.classic / method.model / f"{point}.csv"
        return self.run(method, point[0], seed) / method.reconstruction / "rd.csv"


def method_seeds(preset: Preset, layout: Layout, method: Method) -> tuple[int, ...]:
    """The training seeds of a learned method's points: the study's, cut to the preset's
    limit for the method's models."""
    return layout.seeds[:preset.seed_limits.get(method.run_key, len(layout.seeds))]
