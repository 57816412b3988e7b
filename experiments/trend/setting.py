"""What the trend study trains and measures: the variants (the curves), the settings (data,
lengths, lambdas, test) and the presets."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.zoo_recipe import TEST_IMAGES, TINY, ZOO, Recipe, images_in

REPO = Path(__file__).resolve().parent.parent.parent

ANCHOR = "erp"
"""The variant every other is measured against."""


@dataclass(frozen=True)
class Variant:
    """One curve.

    Attributes:
        key: its name in the CSVs and its folder.
        side: ``oslo`` (``main_sphere_compression.py``, coded with ``oslo_codec.py``'s codec),
            ``erp`` (CompressAI's hyperprior on ERP, ``baselines/train_erp_compressai.py``) or
            ``faces`` (CompressAI's hyperprior on the OSLO side's HEALPix patches laid out as
            images, the same script with ``--layout healpix``).
        label: what it is (``--help`` of ``--variants``).
        recipe: overrides of the :class:`~experiments.zoo_recipe.Recipe` fields.
        erp_width: the planar side's ERP width (0: ``4 * 2**healpix_res``).
        whole: coded whole (the whole sphere, ``-p -1``; the whole ERP image) instead of by
            patches (crops) of the training size.
        trained_by: the key of the variant whose trained runs this one codes, or ``""``.
    """

    key: str
    side: str
    label: str
    recipe: dict = field(default_factory=dict)
    erp_width: int = 0
    whole: bool = False
    trained_by: str = ""

    @property
    def run_key(self) -> str:
        return self.trained_by or self.key

    def recipe_of(self, base: Recipe) -> Recipe:
        return replace(base, **self.recipe)


WHOLE_FACE = {"patch_res": 7, "patches_per_map": 12, "batch": 2}
"""128 x 128 patches (a whole face at resolution 7), as many pixels a step as the zoo's."""

VARIANTS = {v.key: v for v in (
    Variant("oslo", "oslo", "OSLO hyperprior (one 2-hop convolution a block, transposed "
            "convolution up: the zoo's)"),
    Variant("erp", "erp", "ERP hyperprior (CompressAI), 512 x 256"),
    Variant("oslo_paper", "oslo", "OSLO hyperprior, two summed 1-hop convolutions, pixel "
            "shuffle up (the paper's)", recipe={"sphere_flags": ()}),
    Variant("oslo_paper_icnr", "oslo", "the paper's layout with --icnr (the pixel-shuffle "
            "blocks start as nearest up-sampling)", recipe={"sphere_flags": ("--icnr",)}),
    Variant("faces", "faces", "CompressAI's hyperprior on the HEALPix patches as images"),
    Variant("erp_640", "erp", "ERP hyperprior, 640 x 320 (the pixels of the HEALPix map)",
            erp_width=640),
    Variant("oslo_p128", "oslo", "OSLO hyperprior, 128 x 128 patches", recipe=WHOLE_FACE),
    Variant("erp_p128", "erp", "ERP hyperprior, 128 x 128 crops", recipe=WHOLE_FACE),
    Variant("oslo_whole", "oslo", "OSLO hyperprior coded whole", whole=True, trained_by="oslo"),
    Variant("erp_whole", "erp", "ERP hyperprior coded whole", whole=True, trained_by="erp"),
)}
"""The variants: the trend's two, then the ablations (the layer: the paper's and CompressAI's on
the same pixels; the pixel count; the patch size; the coding)."""


@dataclass(frozen=True)
class Setting:
    """What the study trains and measures.

    Attributes:
        recipe: the training recipe of the variants (before their overrides).
        train_dirs: folders of training images (every JPEG).
        variants: the keys of the curves (the anchor among them).
        base_lambda: lambda of the bases.
        lengths: base lengths in epochs, each a multiple of the recipe's checkpoint interval.
        lambdas: the lambdas of a curve, each fine-tuned from the base.
        finetune_epochs: epochs of a fine-tuning.
        test_res: HEALPix resolution of the test maps (ERP width ``4 * 2**test_res``).
        test_images: images of ``samples/`` coded for the points.
        sphere_points: S-PSNR's points.
    """

    recipe: Recipe
    train_dirs: tuple[str, ...]
    variants: tuple[str, ...]
    base_lambda: float
    lengths: tuple[int, ...]
    lambdas: tuple[float, ...]
    finetune_epochs: int
    test_res: int
    test_images: tuple[str, ...]
    sphere_points: str = "misc/sphere_10242.txt"

    def images(self) -> list[Path]:
        return images_in(self.train_dirs)

    def steps(self, epochs: int) -> int:
        """Base steps of ``epochs`` (every variant makes the same steps an epoch)."""
        return epochs * self.recipe.steps_per_epoch(len(self.images()))

    def erp_width(self, variant: Variant, res: int) -> int:
        """The ERP width of a planar variant's images at HEALPix resolution ``res``: its own
        width scaled with the resolution, else ``4 * 2**res``."""
        if variant.erp_width:
            return variant.erp_width * 2**res // 2**self.recipe.healpix_res
        return 4 * 2**res


ZOO_DATA = ("samples/planets", "samples/zoo_train")
LAMBDAS = (0.0035, 0.013, 0.05)
PRESETS = {
    "trend": Setting(ZOO, ZOO_DATA, ("oslo", "erp"), 0.013, (10, 20, 40, 160), LAMBDAS, 5, 7,
                     TEST_IMAGES),
    "ablation": Setting(ZOO, ZOO_DATA, tuple(VARIANTS), 0.013, (40,), LAMBDAS, 5, 7,
                        TEST_IMAGES),
}
"""``trend``: OSLO against ERP at base lengths spanning 16x (2,100 to 33,600 steps).
``ablation``: every variant at one length."""

TINY_PRESETS = {
    "trend": Setting(TINY, ("samples/planets",), ("oslo", "erp"), 0.013, (1, 2),
                     (0.002, 0.05), 1, 6, ("earth_day.jpg", "milky_way.jpg")),
    "ablation": Setting(TINY, ("samples/planets",),
                        ("oslo", "erp", "faces", "erp_whole", "oslo_whole"),
                        0.013, (1,), (0.002, 0.05), 1, 6, ("earth_day.jpg",)),
}
"""Settings of seconds for the tests (8 channels, resolution 6: 64 x 64 patches are whole
faces, so the 128 x 128 variants have no tiny form)."""
