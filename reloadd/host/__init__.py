"""The operating system as the supervisor and the sync share it: the System seam, processes and
PID-1 duties, the watcher, the warm process, hooks, stdin, the control channel."""
