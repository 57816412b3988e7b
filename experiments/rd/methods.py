"""The curves of the RD study: the learned methods (OSLO, DeepSphere, the planar CompressAI
baseline, each with its coding of a test image) and the classic codecs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One curve of the study.

    Attributes:
        key: name of its folder and of its rows in the CSVs.
        label: name in the plot and the tables.
        kind: ``sphere`` (main_sphere_compression.py), ``erp`` (the planar CompressAI baseline)
            or ``classic`` (a codec of misc/compress_erp_baseline.py).
        model: the model of the script (``-m``), or the codec name.
        conv: ``SDPAConv`` or ``ChebConv`` for ``sphere`` methods.
        patch_border: ``--patch-border`` of a ``sphere`` method's training (``cut``, the
            paper's, or ``sphere``).
        sphere_start: its ``--sphere-start`` (with ``patch_border="sphere"``).
        coding: how a learned method codes a test image: ``patch`` (independent patches
            of the preset's patch resolution, each with its own strings: ``-prvt pr`` of a
            ``sphere`` method, ``--patch-size-valtest 2**pr`` of an ``erp`` one) or
            ``sphere`` (whole: the whole sphere, ``-prvt -1``, or the whole ERP image).
            Models trained on patches (crops) are coded by patch by default, on both sides:
            coded whole, they meet real neighbours where they learned a zero border.
        trained_by: the key of the method whose trained models this one evaluates (another
            coding of the same models: no training of its own), or ``""``.
    """

    key: str
    label: str
    kind: str
    model: str
    conv: str = ""
    patch_border: str = "cut"
    sphere_start: float = 0.0
    coding: str = "patch"
    trained_by: str = ""

    @property
    def run_key(self) -> str:
        """The folder of the training runs this method evaluates."""
        return self.trained_by or self.key

    @property
    def reconstruction(self) -> str:
        """The evaluation folder in a run (one per coding of the run's model)."""
        return f"reconstruction_{self.key}" if self.trained_by else "reconstruction"


METHODS = {
    m.key: m
    for m in (
        Method("oslo_fp", "OSLO factorized", "sphere", "SphereFactorizedPrior", "SDPAConv"),
        Method("oslo_sh", "OSLO hyperprior", "sphere", "SphereScaleHyperprior", "SDPAConv"),
        Method("oslo_sh_whole", "OSLO hyperprior, coded whole", "sphere",
               "SphereScaleHyperprior", "SDPAConv", coding="sphere", trained_by="oslo_sh"),
        Method("oslo_sh_sphere", "OSLO hyperprior (sphere border), coded whole", "sphere",
               "SphereScaleHyperprior", "SDPAConv", patch_border="sphere", sphere_start=0.8,
               coding="sphere"),
        Method("oslo_sh_sphere_patches", "OSLO hyperprior (sphere border), coded by patch",
               "sphere", "SphereScaleHyperprior", "SDPAConv", patch_border="sphere",
               trained_by="oslo_sh_sphere"),
        Method("deepsphere_fp", "DeepSphere factorized", "sphere", "SphereFactorizedPrior",
               "ChebConv"),
        Method("deepsphere_sh", "DeepSphere hyperprior", "sphere", "SphereScaleHyperprior",
               "ChebConv"),
        Method("erp_fp", "ERP factorized (CompressAI)", "erp", "FactorizedPrior"),
        Method("erp_sh", "ERP hyperprior (CompressAI)", "erp", "ScaleHyperprior"),
        Method("erp_fp_whole", "ERP factorized (CompressAI), coded whole", "erp",
               "FactorizedPrior", coding="sphere", trained_by="erp_fp"),
        Method("erp_sh_whole", "ERP hyperprior (CompressAI), coded whole", "erp",
               "ScaleHyperprior", coding="sphere", trained_by="erp_sh"),
        Method("jpeg", "JPEG", "classic", "jpeg"),
        Method("webp", "WebP", "classic", "webp"),
        Method("jpeg2000", "JPEG 2000", "classic", "jpeg2000"),
    )
}
