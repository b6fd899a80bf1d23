"""Transfer evaluation of discovered optimizers: does an optimizer found on a proxy hold up?

``python -m transfer --optimizer OPT --task TASK`` compares an optimizer (a published one, an
exported ``.py`` file, an equation or a study trial) with tuned baselines under one protocol:
the same LR grid and screen, the same warmup -> hold -> cosine schedule and the same seeds for
every optimizer. ``python -m transfer suite --cpu`` runs the published optimizers and the
baselines on two CPU tasks that need no download.

Modules: ``datasets`` (the image data sets, read from disk), ``models`` (EfficientNetV2-S, a
digits ConvNet), ``tasks`` and ``charlm`` (what a run trains on), ``optimizers`` (specs and
baselines), ``runner`` (runs, LR screen, protocol), ``report`` (CSV, markdown, plots),
``suite`` (the CPU suite).
"""
