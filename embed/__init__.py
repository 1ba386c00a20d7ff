"""embed stage: audio of any common format -> VGGish embeddings exactly as Google computes them."""
