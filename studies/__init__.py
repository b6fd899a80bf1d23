"""Study configurations (TOML) shipped with optuna-nos; see optuna_nos.study.config."""
