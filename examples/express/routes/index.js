'use strict';
// Everything under routes/ is hot: editing it swaps the router without a restart.
const express = require('express');
const users = require('./users');

const router = express.Router();

router.get('/', (req, res) => {
  res.json({ message: 'Hello from reloadd', pid: process.pid });
});

// Answers after ?ms= milliseconds (capped): shows that a request in flight survives a reload.
const MAX_SLOW_MS = 10000;
router.get('/slow', (req, res) => {
  const ms = Math.min(Number(req.query.ms) || 1000, MAX_SLOW_MS);
  console.log(`[app] slow request: answering in ${ms}ms`);
  setTimeout(() => res.json({ message: 'slow response', waited: ms, pid: process.pid }), ms);
});

router.use('/users', users);

module.exports = router;
