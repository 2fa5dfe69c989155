"""madlab: the application (CLI, configs, runs, sweeps, results store) around loops/toy/analysis."""
__version__ = "0.1.0"
