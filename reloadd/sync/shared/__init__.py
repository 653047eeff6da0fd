"""What both sides of a sync agree on: frames, typed messages and their schema, manifests, the
path gate, excludes, channels, the heartbeat."""
