"""active_learning stage of homesound: rank what the detector is unsure about, label it in Label Studio, retrain."""
