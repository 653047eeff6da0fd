"""reloadd: a PID-1-safe, nodemon-compatible supervisor for Node.js apps in containers."""

__version__ = "0.1.0"
