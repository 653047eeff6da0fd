"""``reloadd agent``, the pod side: check every path, apply each batch all at once or not at all,
install dependencies, tell the supervisor."""
