"""audioset_fetch stage of homesound."""
