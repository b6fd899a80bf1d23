"""The optuna-nos command: its subcommands, argument types and progress bar."""
