"""active_learning stage of homesound."""
