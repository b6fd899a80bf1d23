"""The Optuna side: the stored contract, config, trial params, pruners, storage, workers,
and what the dashboard and leaderboard show."""
