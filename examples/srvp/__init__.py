"""SRVP (Stochastic Latent Residual Video Prediction, Franceschi et al., ICML 2020) composed from latentdyn parts.

Modules: ``model`` (``SRVP``, built from a ``config.ModelConfig``), ``config`` (``ModelConfig``, ``TrainConfig``,
``PRESETS``), ``train`` (``train()``, ``python -m examples.srvp.train``), ``evaluate`` (``evaluate()``, the paper's
protocol), ``checkpoint`` (``load_model``, ``save_run``), ``demo``, ``data`` (test sets, dataset conversion),
``official`` (the official checkpoints), ``svglp`` (an SVG-LP-style baseline) and ``quickstart``. See
``examples/srvp/README.md`` and ``docs/srvp.md``.
"""
