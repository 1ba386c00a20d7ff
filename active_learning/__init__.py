"""active_learning stage of homesound: rank what the detector is unsure about, label it in Label Studio, retrain."""

# Here, not in ranking.py, so the CLI can offer them without importing numpy at startup.
STRATEGIES = ("least-confidence", "margin", "entropy", "bald", "random")
AGGREGATES = ("max", "mean")
