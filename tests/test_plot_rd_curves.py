"""misc/plot_rd_curves.py: one PNG with a panel per metric, and its bad input."""

import pytest
from PIL import Image
from test_bd_rate_script import write_curve

from misc.plot_rd_curves import main
from utils.errors import OsloError


def test_writes_one_png_with_a_panel_per_metric(tmp_path):
    a = write_curve(tmp_path, "a")
    b = write_curve(tmp_path, "b", rate_scale=0.9)
    main(["-c", "anchor", *a, "-c", "cheaper", *b, "-o", str(tmp_path / "rd.png"),
          "--title", "test"])
    with Image.open(tmp_path / "rd.png") as image:
        assert image.size == (1100, 840)  # 2 x 2 panels of 5.5 x 4.2 inches at 100 dpi
    main(["-c", "anchor", *a, "-o", str(tmp_path / "one.png"), "--metric", "s_psnr_y"])
    with Image.open(tmp_path / "one.png") as image:
        assert image.size == (550, 420)


def test_bad_input(tmp_path):
    a = write_curve(tmp_path, "a")
    with pytest.raises(OsloError, match="labels must differ"):
        main(["-c", "a", *a, "-c", "a", *a, "-o", str(tmp_path / "rd.png")])
    with pytest.raises(OsloError, match="does not exist"):
        main(["-c", "a", *a, "-o", str(tmp_path / "none" / "rd.png")])
    with pytest.raises(OsloError, match="no RD file"):
        main(["-c", "a", "-o", str(tmp_path / "rd.png")])
    assert not (tmp_path / "rd.png").exists()


def test_every_curve_has_its_own_colour(tmp_path, monkeypatch):
    """Eleven curves (the medium study's): beyond matplotlib's 10-colour cycle."""
    import matplotlib.axes
    import numpy as np

    from utils.rd_plot import plot

    drawn = {}
    original = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn[kwargs["label"]] = kwargs["color"]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    curves = {f"curve {i}": {"bpp": np.array([0.1, 0.2]), "s_psnr_y": np.array([20.0, 21.0 + i])}
              for i in range(11)}
    plot(curves, ["s_psnr_y"], tmp_path / "rd.png",
         styles={"curve 3": {"linestyle": "--"}, "curve 4": {"color": "black"}})
    assert drawn["curve 4"] == "black"
    assert len({tuple(np.atleast_1d(c)) for c in drawn.values()}) == 11
