"""Thin Hydra entry points: compose the config, call the library, report errors in one line."""
