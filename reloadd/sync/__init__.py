"""``reloadd sync``: the laptop side sends, ``reloadd agent`` in the pod applies, over a command's stdio."""
