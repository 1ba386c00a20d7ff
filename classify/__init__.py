"""classify stage of homesound."""
