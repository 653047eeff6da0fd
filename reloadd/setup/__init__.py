"""Argv, config files and the environment into one Settings and the pieces of the plan: reads files,
starts nothing."""
