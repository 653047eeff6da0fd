"""The watcher: which notifier hears each root (inotify, watchfiles, or our poller), recovery when
notifications are lost, and which raw changes become reported paths and bursts."""
