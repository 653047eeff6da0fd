'use strict';
const express = require('express');

const USERS = [
  { id: 1, name: 'Ada' },
  { id: 2, name: 'Grace' },
];

const router = express.Router();

router.get('/', (req, res) => res.json(USERS));

router.get('/:id', (req, res) => {
  const user = USERS.find((candidate) => candidate.id === Number(req.params.id));
  if (!user) return res.status(404).json({ error: 'no such user' });
  return res.json(user);
});

module.exports = router;
