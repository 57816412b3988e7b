"""The settings of the RD study (``--tiny``, ``--small``, ``--medium``, ``--paper``)."""

from __future__ import annotations

from dataclasses import dataclass, field

PAPER_POINTS = ((0.0005, 1), (0.0009, 1), (0.0018, 1), (0.0035, 2), (0.0067, 3), (0.0130, 4),
                (0.0250, 5), (0.0483, 6), (0.0932, 7), (0.1800, 8))


@dataclass(frozen=True)
class Preset:
    """The setting of a study.

    Attributes:
        name: ``tiny``, ``small`` or ``paper``.
        healpix_res: resolution ``r`` of the maps (``12 * 4**r`` pixels, the bpp denominator).
        patch_res: patch resolution of training and evaluation (``2**pr`` x ``2**pr`` pixels).
        points: ``(lambda, quality)`` pairs; the quality gives (N, M) unless ``channels``.
        channels: ``(N, M)`` of every learned model, or :obj:`None` for the quality's.
        epochs: training epochs of every learned model.
        patches_per_map: random training patches (ERP crops) per map and epoch.
        batch_size: training batch size; evaluation uses ``eval_batch_size``.
        ratio_train, ratio_validation: the split of step 1 (the rest is the test set).
        learning_rate: Adam learning rate of every learned model.
        scheduler_patience: epochs without improvement of the training loss before the
            learning rate is divided by sqrt(10) (``ReduceLROnPlateau``, every learned model).
        lr_schedule: ``--lr-schedule`` of every learned model: ``plateau`` (with
            ``scheduler_patience``), ``step`` or ``cosine`` (to 0 over the epochs).
        qualities: qualities of the classic codecs, by codec.
        train_image_dirs: folders of training images (then every image of ``-i`` is a test
            image and ``ratio_train`` is unused), or none for step 1's split of ``-i``.
        sphere_points: S-PSNR's points (``sphere_<10*4**k+2>.txt``, generated if missing).
        loader_workers: data loading processes of the sphere training.
        gpu: every learned run on CUDA (``-g``); training of the sphere models under
            ``torchrun``.
        run: whether the study runs its steps (``False``: it only writes ``commands.sh``).
        methods: the default ``--methods`` (:obj:`None`: every method).
        seeds: the default ``--seeds``.
        seed_limits: at most this many of the seeds for a method (by the key of the method
            whose models it codes), e.g. one seed of the slow DeepSphere models.
        jobs: the default ``--jobs`` (trainings at a time).
        finetune_epochs: 0: every point trains from scratch for ``epochs``. Else a base model
            of each method (and seed) trains from scratch for ``epochs`` at the highest
            lambda, and every point, that lambda too, is fine-tuned from its final weights
            (``--init-from``) for this many epochs with a new schedule from ``finetune_lr``:
            the points of a curve share their start and their steps, so that their
            differences come from lambda rather than from the noise of short trainings.
        finetune_lr: the learning rate of the fine-tunings.
        sphere_finetune_lr: that of the fine-tunings of sphere-border methods, which run on
            whole maps (steps of ``P`` patches): at 5e-4 their training PSNR jumped between 10
            and 26 dB from one epoch to the next, and their curve was not monotone.
    """

    name: str
    healpix_res: int
    patch_res: int
    points: tuple[tuple[float, int], ...]
    channels: tuple[int, int] | None
    epochs: int
    patches_per_map: int
    batch_size: int
    eval_batch_size: int
    ratio_train: float
    ratio_validation: float
    learning_rate: float
    scheduler_patience: int
    lr_schedule: str = "plateau"
    qualities: dict[str, str] = field(default_factory=dict)
    train_image_dirs: tuple[str, ...] = ()
    sphere_points: str = "misc/sphere_655362.txt"
    loader_workers: int = 2
    gpu: bool = False
    run: bool = True
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    seed_limits: dict[str, int] = field(default_factory=dict)
    jobs: int = 1
    finetune_epochs: int = 0
    finetune_lr: float = 5e-4
    sphere_finetune_lr: float = 1e-4

    @property
    def base_point(self) -> tuple[float, int]:
        """The (lambda, quality) of the base models of ``finetune_epochs``: the highest
        lambda."""
        return max(self.points)


PRESETS = {
    "tiny": Preset(
        "tiny", healpix_res=6, patch_res=6, points=((0.002, 1), (0.02, 1)), channels=(8, 8),
        epochs=1, patches_per_map=1, batch_size=4, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-4, scheduler_patience=20,
        qualities={"jpeg": "10,50", "webp": "10,50", "jpeg2000": "100,20"},
        train_image_dirs=("samples/planets",), sphere_points="misc/sphere_10242.txt",
        loader_workers=0),
    "small": Preset(
        "small", healpix_res=7, patch_res=6,
        points=((0.002, 1), (0.005, 1), (0.012, 1), (0.03, 1)), channels=(32, 48),
        epochs=100, patches_per_map=6, batch_size=8, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-3, scheduler_patience=15,
        qualities={"jpeg": "10,20,40,60,80", "webp": "5,20,40,60,80",
                   "jpeg2000": "200,100,50,25,12"},
        train_image_dirs=("samples/planets",)),
    "medium": Preset(
        "medium", healpix_res=7, patch_res=6,
        points=((0.002, 1), (0.005, 1), (0.012, 1), (0.03, 1)), channels=(64, 96),
        epochs=50, patches_per_map=6, batch_size=8, eval_batch_size=12, ratio_train=0.0,
        ratio_validation=0.0, learning_rate=1e-3, scheduler_patience=15, lr_schedule="cosine",
        qualities={"jpeg": "10,20,40,60,80", "webp": "5,20,40,60,80",
                   "jpeg2000": "200,100,50,25,12"},
        train_image_dirs=("samples/planets", "samples/photos"),
        methods=("oslo_fp", "oslo_sh", "oslo_sh_sphere", "deepsphere_sh", "erp_fp", "erp_sh",
                 "jpeg", "webp", "jpeg2000"),
        seeds=(0, 1), seed_limits={"deepsphere_sh": 1, "oslo_sh_sphere": 1}, jobs=2,
        finetune_epochs=25, finetune_lr=5e-4),
    "paper": Preset(
        "paper", healpix_res=10, patch_res=8, points=PAPER_POINTS, channels=None, epochs=1000,
        patches_per_map=12, batch_size=10, eval_batch_size=10, ratio_train=0.8,
        ratio_validation=0.1, learning_rate=1e-4, scheduler_patience=20,
        qualities={"jpeg": "5,10,20,40,60,80,95", "webp": "5,10,20,40,60,80,95",
                   "jpeg2000": "200,100,50,25,12"},
        loader_workers=4, gpu=True, run=False),
}
