'use strict';
// The example app reloadd runs: `npm run dev` (or `reloadd` on its own) in this directory.
//
// Code outside routes/ changing means a restart: reloadd sends SIGUSR2 (nodemon's restart
// signal) and starts a fresh process once this one has exited. Changes only inside routes/
// are "hot" (see nodemon.json): reloadd sends SIGHUP instead, and the app swaps its router
// in place without closing the server, so no request is dropped.

const express = require('express');
const { createHotRoutes } = require('./lib/hot-routes');

const PORT = Number(process.env.PORT || 3000);
// Loopback on a laptop; containers set HOST=0.0.0.0 so the pod's port is reachable.
const HOST = process.env.HOST || '127.0.0.1';
// Signals that end the process. SIGTERM: docker stop / kubelet (via reloadd), SIGINT: Ctrl+C,
// SIGUSR2: reloadd's (and nodemon's) restart signal.
const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGUSR2'];
// In-flight requests get this long after a shutdown signal; it stays well below reloadd's
// stop-timeout (5 s by default) so the app finishes on its own terms instead of by SIGKILL.
const SHUTDOWN_GRACE_MS = Number(process.env.SHUTDOWN_GRACE_MS || 2000);
// The signal reloadd sends when only files under routes/ changed ("hot" in nodemon.json).
const HOT_RELOAD_SIGNAL = 'SIGHUP';

const routes = createHotRoutes(require.resolve('./routes'));
const app = express();

// Answered by server.js itself so that health checks keep passing even while routes/ is broken.
app.get('/healthz', (req, res) => res.json({ status: 'ok', pid: process.pid }));
app.use(routes.middleware);

const server = app.listen(PORT, HOST, () => {
  const { address, port } = server.address();
  console.log(`[app] listening on http://${address}:${port} (pid ${process.pid})`);
});

let shuttingDown = false;

function shutdown(signal) {
  if (shuttingDown) return; // a second signal while closing changes nothing
  shuttingDown = true;
  console.log(`[app] ${signal}: closing the server`);
  server.close(() => {
    console.log('[app] closed cleanly');
    process.exit(0);
  });
  server.closeIdleConnections(); // keep-alive sockets with no request would hold close() open
  setTimeout(() => {
    console.log(`[app] requests still open after ${SHUTDOWN_GRACE_MS}ms: closing them`);
    server.closeAllConnections();
    process.exit(1);
  }, SHUTDOWN_GRACE_MS).unref();
}

for (const signal of SHUTDOWN_SIGNALS) process.on(signal, () => shutdown(signal));
process.on(HOT_RELOAD_SIGNAL, () => routes.reload(process.env.RELOADD_HOT_FILE));
