"""The RD study of ``experiments/rd_study.py`` (see its docstring), one concept a module:

* :mod:`~experiments.rd.methods`: the curves (learned methods and classic codecs);
* :mod:`~experiments.rd.presets`: the settings (``--tiny`` ... ``--paper``);
* :mod:`~experiments.rd.layout`: the input images and the files of a study's folder;
* :mod:`~experiments.rd.steps`: the steps (toolkit script runs) and ``commands.sh``;
* :mod:`~experiments.rd.runner`: running the steps (jobs at a time, resuming, ``steps.csv``);
* :mod:`~experiments.rd.curves`: the RD curves read back, their means and Pareto fronts;
* :mod:`~experiments.rd.bd`: BD-rates and BD-PSNRs against the anchor, per seed and mean;
* :mod:`~experiments.rd.report`: ``rd_points.csv``, ``bd_rates.csv``, the plot and ``report.md``;
* :mod:`~experiments.rd.study`: one study from its command-line settings.
"""
