"""The warm process: the next generation's node, started and preloaded before it is needed."""
