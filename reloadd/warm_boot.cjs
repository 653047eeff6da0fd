'use strict';
// reloadd's warm process. reloadd starts `node [the app's node flags] warm_boot.cjs` with the
// app's environment, working directory and stdio while the current generation still runs.
// This file then:
//   1. waits for its orders on descriptor 3 (one JSON line: the app's argv, execArgv, entry
//      point, inspector and the dependencies to preload);
//   2. becomes the app as far as the app can tell before its first line runs: process.argv,
//      process.execArgv, require.main (this module object, renamed to the entry), and
//      requires the dependencies the previous generation loaded;
//   3. says "ready" on descriptor 4 and blocks until reloadd writes "go" (or closes the pipe:
//      reloadd is gone, and so is this process);
//   4. opens the inspector if the app asked for one (only now: the old generation holds the
//      port until it is stopped), runs the entry point exactly as `node entry.js` would, and
//      reports which packages the app's own code required, for the next warm process.
// Blocking reads keep the event loop empty while waiting: no timer, handle or listener of
// ours is left for the app to see.

const fs = require('fs');
const path = require('path');
const Module = require('module');

const CONTROL_FD = 3; // reloadd -> this process: orders
const REPORT_FD = 4; // this process -> reloadd: what happened
const SEP = path.sep;
const IN_NODE_MODULES = `${SEP}node_modules${SEP}`;
const bootModule = module;
const FRESH_MAIN_SYMBOLS = new Set(['kIsMainSymbol', 'kIsCachedByESMLoader', 'kIsExecuting']);
const bootFile = __filename;

// Re-open both pipes through /proc: node opens files close-on-exec, so a program the app
// spawns does not inherit them (the descriptors reloadd handed over are inheritable).
function reopen(fd, flags) {
  let copy;
  try {
    copy = fs.openSync(`/proc/self/fd/${fd}`, flags);
  } catch {
    return fd; // no /proc: keep the inherited descriptor
  }
  fs.closeSync(fd);
  return copy;
}
const control = reopen(CONTROL_FD, 'r');
let report = reopen(REPORT_FD, 'w');

let pending = Buffer.alloc(0);
function readLine() {
  const chunk = Buffer.alloc(65536);
  for (;;) {
    const newline = pending.indexOf(10);
    if (newline >= 0) {
      const line = pending.subarray(0, newline).toString('utf8');
      pending = pending.subarray(newline + 1);
      return JSON.parse(line);
    }
    let count;
    try {
      count = fs.readSync(control, chunk, 0, chunk.length, null);
    } catch (err) {
      if (err.code === 'EINTR' || err.code === 'EAGAIN') continue;
      throw err;
    }
    if (count === 0) process.reallyExit(0); // reloadd is gone: never outlive it
    pending = Buffer.concat([pending, chunk.subarray(0, count)]);
  }
}

function send(message) {
  if (report === null) return;
  try {
    fs.writeSync(report, JSON.stringify(message) + '\n');
  } catch {
    // reloadd stopped listening: nothing to report to
  }
}

function closeReport() {
  if (report !== null) fs.closeSync(report);
  report = null;
}

// -- which loader runs the entry (node 20's run_main.js shouldUseESMLoader, without the
//    flags that make reloadd start cold: --loader, --import, --experimental-default-type) ----
function resolveMain(script) {
  const found = Module._findPath(path.resolve(script), null, true);
  return found ? fs.realpathSync(found) : undefined;
}

function packageType(file) {
  let dir = path.dirname(file);
  for (;;) {
    if (dir.endsWith(`${SEP}node_modules`)) return undefined;
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) return JSON.parse(fs.readFileSync(candidate, 'utf8')).type;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function entryKind(mainPath) {
  if (mainPath === undefined) return 'node'; // not found: let node's own runMain say so
  if (mainPath.endsWith('.mjs')) return 'esm';
  if (mainPath.endsWith('.cjs')) return 'cjs';
  try {
    return packageType(mainPath) === 'module' ? 'esm' : 'cjs';
  } catch {
    return 'node'; // an unreadable package.json: node reports it as it would on a cold start
  }
}

// -- preloading, watched for what makes it unsafe -----------------------------------------------
const FS_PATH_FUNCTIONS = [
  'readFileSync', 'readFile', 'openSync', 'open', 'statSync', 'stat', 'lstatSync', 'lstat',
  'existsSync', 'exists', 'accessSync', 'access', 'readdirSync', 'readdir', 'opendirSync',
  'opendir', 'createReadStream', 'watch', 'watchFile', 'readlinkSync', 'readlink',
];
const FS_PROMISE_FUNCTIONS = ['readFile', 'open', 'stat', 'lstat', 'access', 'readdir', 'opendir', 'readlink'];
const SPAWN_FUNCTIONS = ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork'];
const LOADER_PARTS = () => [
  Module.prototype.require, Module._load, Module._resolveFilename, Module.prototype._compile,
  Module._extensions['.js'], Module._extensions['.json'],
];

let watching = null; // {root, seen: []} while a dependency is being preloaded

function asPath(value) {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString();
  if (value instanceof URL) return require('url').fileURLToPath(value);
  return null; // a descriptor: opened earlier, already judged
}

function note(what) {
  if (watching !== null && watching.seen.length < 5) watching.seen.push(what);
}

function checkPath(value) {
  if (watching === null) return;
  const given = asPath(value);
  if (given === null) return;
  const full = path.resolve(given);
  const inside = full === watching.root || full.startsWith(watching.root + SEP);
  if (inside && !full.includes(IN_NODE_MODULES)) note(`read ${full}`);
}

// A dependency that reads the app's files or runs a program when required would keep what it
// saw while the warm process waits; the files may change before "go". Wrappers stay inert
// after preloading (a dependency may have kept a reference to one).
function wrap(owner, name, check) {
  const original = owner[name];
  if (typeof original !== 'function') return () => {};
  const wrapper = {
    [name](...args) {
      check(args);
      return original.apply(this, args);
    },
  }[name];
  owner[name] = wrapper;
  return () => {
    if (owner[name] === wrapper) owner[name] = original;
  };
}

function watchIO() {
  const restores = [];
  for (const name of FS_PATH_FUNCTIONS) restores.push(wrap(fs, name, (args) => checkPath(args[0])));
  for (const name of FS_PROMISE_FUNCTIONS) restores.push(wrap(fs.promises, name, (args) => checkPath(args[0])));
  const childProcess = require('child_process');
  for (const name of SPAWN_FUNCTIONS) restores.push(wrap(childProcess, name, (args) => note(`ran ${args[0]}`)));
  return () => restores.forEach((restore) => restore());
}

function preload(files, parent, root) {
  const unsafe = [];
  let count = 0;
  const restore = watchIO();
  try {
    for (const file of files) {
      const loaderBefore = LOADER_PARTS();
      watching = { root, seen: [] };
      try {
        Module._load(file, parent, false);
      } catch (err) {
        unsafe.push({ file, reason: `threw ${err && err.code ? err.code : String(err).slice(0, 200)}` });
        break;
      }
      if (watching.seen.length > 0) {
        unsafe.push({ file, reason: watching.seen[0] });
        break;
      }
      if (LOADER_PARTS().some((part, index) => part !== loaderBefore[index])) {
        unsafe.push({ file, reason: 'changed how modules are loaded' });
        break;
      }
      count += 1;
    }
  } finally {
    watching = null;
    restore();
  }
  return { count, unsafe };
}

// -- what the app loaded: packages its own code required, in order ------------------------------
function appRoots() {
  const modules = Object.values(Module._cache);
  const roots = new Set();
  for (const parent of modules) {
    if (!parent.filename || parent.filename.includes(IN_NODE_MODULES)) continue;
    for (const child of parent.children || []) {
      if (child.filename && child.filename.includes(IN_NODE_MODULES)) roots.add(child);
    }
  }
  return modules.filter((mod) => roots.has(mod)).map((mod) => mod.filename);
}

// -- the sequence ---------------------------------------------------------------------------------
const orders = readLine();
const originalLoader = LOADER_PARTS();
process.argv.splice(1, process.argv.length - 1, path.resolve(orders.script), ...orders.args);
if (orders.inspectFlag) process.execArgv.splice(orders.inspectIndex, 0, orders.inspectFlag);

const mainPath = resolveMain(orders.script);
const kind = entryKind(mainPath);
delete Module._cache[bootFile];
let preloaded = { count: 0, unsafe: [] };
if (kind === 'cjs') {
  // This module object is already process.mainModule, marked main by node; it becomes the
  // entry's module, so require.main in a preloaded dependency is the entry, as it would be.
  // Node keeps per-module state under symbols; keep only what a fresh main module has (the
  // bootstrap's own kFormat, 'commonjs' for a .cjs file, would stop node from detecting ES
  // module syntax in an entry .js file without a "type").
  for (const symbol of Object.getOwnPropertySymbols(bootModule)) {
    if (!FRESH_MAIN_SYMBOLS.has(symbol.description)) delete bootModule[symbol];
  }
  bootModule.filename = mainPath;
  bootModule.path = path.dirname(mainPath);
  bootModule.paths = Module._nodeModulePaths(bootModule.path);
  Module._cache[mainPath] = bootModule;
  preloaded = preload(orders.preload, bootModule, orders.root);
} else {
  // An ES module entry has no require.main (process.mainModule is not even defined).
  delete process.mainModule;
  delete Module.prototype.require.main;
}
send({ ready: true, kind, preloaded: preloaded.count, unsafe: preloaded.unsafe });

const go = readLine();
fs.closeSync(control);
if (!go.go) process.reallyExit(0);
if (orders.inspect) require('inspector').open(orders.inspect.port, orders.inspect.host, false);

if (kind === 'cjs') {
  const preloadedRoots = new Set(orders.preload.slice(0, preloaded.count));
  bootModule.children = [];
  bootModule.exports = {};
  try {
    bootModule.load(mainPath); // what Module._load(main, null, true) does for a module not yet loaded
  } catch (err) {
    delete Module._cache[mainPath];
    closeReport();
    throw err;
  }
  const loaded = appRoots();
  const patched = LOADER_PARTS().some((part, index) => part !== originalLoader[index]);
  const required = new Set(loaded);
  const unused = [...preloadedRoots].filter((file) => !required.has(file));
  send({ loaded, patched, unused, unsafe: preloaded.unsafe });
  closeReport();
} else {
  closeReport();
  Module.runMain();
}
