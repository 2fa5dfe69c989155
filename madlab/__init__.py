"""madlab: the application (CLI, configs, runs, sweeps, results store) around loops/toy/analysis."""
__version__ = "0.2.0"
