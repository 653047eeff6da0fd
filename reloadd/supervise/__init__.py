"""The supervisor: decides what happens to the app and acts only through the host's System."""
