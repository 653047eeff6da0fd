"""``reloadd sync``, the laptop side: watch LOCAL_DIR, compare it with each pod, send each burst
as one batch, reconnect, report."""
