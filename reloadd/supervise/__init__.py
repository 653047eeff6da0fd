"""The supervisor: decides what happens to the app, and acts through the host's System and the host
objects it holds."""
