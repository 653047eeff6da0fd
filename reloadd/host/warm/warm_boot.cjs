'use strict';
// reloadd's warm process. reloadd starts the app's own command line, `node [node flags] server.js
// [args]`, with the app's environment, working directory and stdio while the current generation
// still runs, and adds `--require <this file>` to NODE_OPTIONS in that one process's environment.
// Node runs this file as a preload, before the entry point. It:
//   1. reads its orders on descriptor 3 (one JSON line: the app's own NODE_OPTIONS, the inspector
//      and the dependencies to preload) and puts process.env.NODE_OPTIONS back as the app set it;
//   2. creates the entry's module object as node would (process.mainModule, require.main, id '.'),
//      so a dependency required now sees the entry as require.main, and requires the packages the
//      previous generation's own code required;
//   3. says "ready" on descriptor 4 and blocks until reloadd writes "go" (or closes the pipe:
//      reloadd is gone, and so is this process); for an ES module entry started with the gate
//      (warm_gate.mjs, `--import` in NODE_OPTIONS), steps 3 and 4 wait for the gate, which first
//      has node build the preloaded packages' ES module wrappers;
//   4. makes the clocks that count from the process's start count from now, opens the inspector
//      if the app asked for one (only now: the old generation holds the port until it is
//      stopped), removes itself from require.cache and returns. Node itself then runs the entry
//      point: its own stack traces, argv, require.main, inspector title and exit codes.
//   5. once the entry's first run is over (a tick later), reports which packages the app's own
//      code required, for the next warm process.
// Blocking reads keep the event loop empty while waiting: no timer, handle or listener of
// ours is left for the app to see.

const { isMainThread } = require('worker_threads');

if (!isMainThread) {
  // A worker inherits the process's --require: nothing to do there but to leave no trace.
  delete require.cache[__filename];
  return; // a CommonJS module's top level is a function body
}

const fs = require('fs');
const path = require('path');
const Module = require('module');

const CONTROL_FD = 3; // reloadd -> this process: orders
const REPORT_FD = 4; // this process -> reloadd: what happened
const SEP = path.sep;
const IN_NODE_MODULES = `${SEP}node_modules${SEP}`;
const bootFile = __filename;
// Node keeps per-module state under symbols it does not export; this module has them all.
const SYMBOLS = Object.fromEntries(Object.getOwnPropertySymbols(module).map((symbol) => [symbol.description, symbol]));

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
  try {
    const found = Module._findPath(path.resolve(script), null, true);
    return found ? fs.realpathSync(found) : undefined;
  } catch {
    return undefined;
  }
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
  if (mainPath === undefined) return 'node'; // not found: node's own runMain says so
  if (mainPath.endsWith('.mjs')) return 'esm';
  if (mainPath.endsWith('.cjs')) return 'cjs';
  try {
    return packageType(mainPath) === 'module' ? 'esm' : 'cjs';
  } catch {
    return 'node'; // an unreadable package.json: node reports it as it would on a cold start
  }
}

// -- the entry's module, made before its dependencies are required ---------------------------------
// Module._load(entry, null, true) reuses a cached module that is not loaded yet when it is marked
// as created by the ES module loader (node passes CommonJS modules from import to require that
// way), and then loads it: the module object a preloaded dependency saw as require.main is the
// one that runs the entry.
function makeMain(mainPath) {
  const entry = new Module(mainPath, null);
  entry.filename = mainPath;
  entry.paths = Module._nodeModulePaths(path.dirname(mainPath));
  entry.id = '.';
  entry[SYMBOLS.kIsMainSymbol] = true;
  entry[SYMBOLS.kIsCachedByESMLoader] = true;
  process.mainModule = entry;
  Module.prototype.require.main = entry;
  Module._cache[mainPath] = entry;
  return entry;
}

function unmakeMain(entry) {
  if (Module._cache[entry.filename] === entry) delete Module._cache[entry.filename];
  delete process.mainModule;
  delete Module.prototype.require.main;
}

// -- clocks that count from the process's start ---------------------------------------------------
// The app starts now, not when this process was forked: process.uptime(), performance.now() and
// performance.timeOrigin count from "go". (process.hrtime has no origin of its own: it is the
// system's monotonic clock, the same in any process.)
function restartClocks() {
  const { performance } = require('perf_hooks');
  const uptime = process.uptime;
  const now = performance.now.bind(performance);
  const uptimeBase = uptime();
  const nowBase = now();
  const origin = performance.timeOrigin + nowBase;
  process.uptime = { uptime: () => uptime() - uptimeBase }.uptime;
  Object.defineProperty(performance, 'now', { value: { now: () => now() - nowBase }.now, configurable: true, writable: true });
  Object.defineProperty(performance, 'timeOrigin', { get: () => origin, configurable: true });
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

// -- ES module entries: what they imported --------------------------------------------------------
// An ES module app imports CommonJS packages through node's CommonJS cache, so requiring them
// here is what saves their loading; a package required here that the app imports again is
// taken from that cache. Node has no public list of an app's ES modules, so: a CommonJS module
// under node_modules that the ES module loader created itself, or a preloaded one that node
// looked up in the cache while the entry loaded, counts as imported by the app. The lookups are
// seen through a transparent proxy in place of Module._cache while the entry loads.
const ESM_RUNNER_EXIT_LISTENER = 'handleProcessExit'; // node's run_main.js, while the entry loads
const lookedUp = new Set();

function watchLookups(files) {
  const cache = Module._cache;
  Module._cache = new Proxy(cache, {
    get(target, key, receiver) {
      if (files.has(key)) lookedUp.add(key);
      return Reflect.get(target, key, receiver);
    },
  });
  return () => {
    Module._cache = cache;
  };
}

function importedRoots() {
  const modules = Object.values(Module._cache).filter((mod) => mod.filename && mod.filename.includes(IN_NODE_MODULES));
  return modules
    .filter((mod) => mod[SYMBOLS.kIsCachedByESMLoader] === true || lookedUp.has(mod.filename))
    .map((mod) => mod.filename);
}

// A preloaded file counts as used while the app still loads its package: which of a package's
// files node looks up depends on what it has cached (a package's re-exported files are looked up
// only when its ES module wrapper is built), not on what the app imports.
function packageOf(file) {
  const at = file.lastIndexOf(IN_NODE_MODULES) + IN_NODE_MODULES.length;
  const parts = file.slice(at).split(SEP);
  return file.slice(0, at) + parts.slice(0, parts[0].startsWith('@') ? 2 : 1).join(SEP);
}

function reportLoaded(loaded, preloadedRoots, originalLoader, unsafe) {
  const patched = LOADER_PARTS().some((part, index) => part !== originalLoader[index]);
  const required = new Set(loaded.map(packageOf));
  const unused = [...preloadedRoots].filter((file) => !required.has(packageOf(file)));
  send({ loaded, patched, unused, unsafe });
  closeReport();
}

// -- the sequence ---------------------------------------------------------------------------------
const orders = readLine();
if (orders.nodeOptions === null) delete process.env.NODE_OPTIONS;
else process.env.NODE_OPTIONS = orders.nodeOptions;
// The inspector's flag was left off the command line (it would bind the port at start).
if (orders.inspectFlag) process.execArgv.splice(orders.inspectIndex, 0, orders.inspectFlag);
const originalLoader = LOADER_PARTS();
delete Module._cache[bootFile];

const mainPath = resolveMain(process.argv[1]);
const kind = entryKind(mainPath);
let entry = null;
let preloaded = { count: 0, unsafe: [] };
if (kind === 'cjs') {
  entry = makeMain(mainPath);
  preloaded = preload(orders.preload, entry, orders.root);
  entry.children = []; // the entry's own requires fill it, in its order
} else if (kind === 'esm') {
  preloaded = preload(orders.preload, undefined, orders.root); // no parent: as if imported
}
// An ES module entry started with the gate (warm_gate.mjs, added as --import) waits for "go" in
// the gate, once the packages it imports are wrapped as ES modules; any other waits here.
const GATE_EVENT = 'reloadd:warm-gate';
// The gate imports each package under a URL of its own: node keeps the lexed exports per module
// (the slow part), while the entry's import of the plain URL still looks the module up, which is how
// the report learns what the app imported.
const WRAPPER_QUERY = '?reloadd-warm';
const IMPORTABLE = /\.c?js$/; // a CommonJS file: JSON and addons need import attributes or cannot be imported
if (kind === 'esm' && orders.gate) {
  process.once(GATE_EVENT, (box) => {
    const { pathToFileURL } = require('url');
    box.urls = orders.preload.slice(0, preloaded.count).filter((file) => IMPORTABLE.test(file))
      .map((file) => `${pathToFileURL(file).href}${WRAPPER_QUERY}`);
    box.go = run;
  });
} else {
  run();
}

function run() {
  waitForGo();
  start();
}

function waitForGo() {
  send({ ready: true, kind, preloaded: preloaded.count, unsafe: preloaded.unsafe, gateable: canGate() });
  const go = readLine();
  fs.closeSync(control);
  if (!go.go) process.reallyExit(0);
}

// Whether this node takes --import in NODE_OPTIONS (20.6 and later): reloadd adds the gate only then.
function canGate() {
  return process.allowedNodeEnvironmentFlags.has('--import');
}

// After "go": the entry point runs as node would run it, and what it loaded is reported.
function start() {
  if (entry !== null && (resolveMain(process.argv[1]) !== mainPath || entryKind(mainPath) !== 'cjs')) {
    unmakeMain(entry); // the entry moved or changed kind while waiting: node finds it afresh
    entry = null;
  }
  restartClocks();
  if (orders.inspect) require('inspector').open(orders.inspect.port, orders.inspect.host, false);

  const preloadedRoots = new Set(orders.preload.slice(0, preloaded.count));
  if (entry !== null) {
    // The entry's first run happens right after this file returns; a tick later it is over.
    process.nextTick(() => {
      entry[SYMBOLS.kIsCachedByESMLoader] = false;
      reportLoaded(appRoots(), preloadedRoots, originalLoader, preloaded.unsafe);
    });
  } else if (kind === 'esm' && resolveMain(process.argv[1]) === mainPath) {
    // Node's ES module runner listens for 'exit' while the entry's module graph loads and
    // evaluates, and stops listening once it has: that moment is when the app's static imports
    // are all in. Our listener goes with the report.
    const unwatch = watchLookups(preloadedRoots);
    const onRemove = (event, listener) => {
      if (event !== 'exit' || listener.name !== ESM_RUNNER_EXIT_LISTENER) return;
      process.off('removeListener', onRemove);
      unwatch();
      try {
        reportLoaded(importedRoots(), preloadedRoots, originalLoader, preloaded.unsafe);
      } catch {
        closeReport(); // never the app's problem
      }
    };
    process.on('removeListener', onRemove);
  } else {
    closeReport();
  }
}
