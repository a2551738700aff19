"""``moola demo``: the pipeline end to end on the embedded synthetic market.

Generates a seeded synthetic futures market with planted, labelled patterns; stores raw
bars, unlabeled windows, labeled windows and a purged forward-chaining split through the
registry; loads the split back with its audit trail; pretrains a BiLSTM masked autoencoder
on the unlabeled windows for a few seconds; trains the pattern classifiers out of fold (one
with the pretrained encoder); and ends with a direction model, chosen out of fold on the
development period, whose signals are backtested with costs on the held-out period beside a
baseline rule; then a short forecasting section: three correlated synthetic markets,
forward-return targets on feature windows, a LightGBM regression run out of fold over a
walk-forward split and a backtest of each symbol's forecasts. An HTML report of all of it
goes into a run folder; every step is recorded in manifests with content hashes. It runs on
one torch thread by default and reports each stage, epoch and fold as it goes.

Modules: ``_run`` (the steps in order, the printed lines), ``_report`` (the report's
sections, in reading order), ``_progress`` (epochs and folds as progress updates),
``_pretrain`` (the pretraining step and its section), ``_backtest`` (the direction task
and the backtests) and ``_forecast`` (the forecasting section).
"""

from moola.demo._run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
