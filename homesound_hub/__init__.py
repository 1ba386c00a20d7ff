"""hub stage: `homesound listen` (live detection from a microphone or stream, MQTT/Home Assistant,
webhooks, clips for active learning) and `homesound export --hub` (a runtime without TensorFlow or torch)."""
