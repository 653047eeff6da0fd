'use strict';
// Swap an Express router at run time without restarting the server.
//
// The app mounts `middleware`, which delegates every request to the current router. A
// reload forgets the cached modules of the routes directory, requires the entry module
// again and, only if that worked, makes the new router current. Requests already inside
// the old router finish there; the next request goes to the new one. Nothing is closed.

const fs = require('fs');
const path = require('path');

function createHotRoutes(entryFile) {
  const routesDir = path.dirname(fs.realpathSync(entryFile)) + path.sep;
  let router = require(entryFile);

  function middleware(req, res, next) {
    router(req, res, next);
  }

  function reload(hotFile) {
    const changed = readChangedFiles(hotFile);
    const previous = forgetModules(routesDir);
    try {
      router = require(entryFile);
    } catch (error) {
      forgetModules(routesDir); // drop whatever half of the new version did load
      Object.assign(require.cache, previous); // so a later require finds the old, working modules
      console.error(`[app] routes reload failed, keeping the previous routes: ${error.stack || error}`);
      return false;
    }
    const what = changed.length ? changed.map((file) => path.relative(process.cwd(), file)).join(', ') : 'routes/';
    console.log(`[app] routes reloaded in place (pid ${process.pid}): ${what}`);
    return true;
  }

  return { middleware, reload };
}

// The changed files reloadd wrote for us, one absolute path per line. The file is optional:
// without reloadd (`kill -HUP <pid>` by hand) everything under routes/ is reloaded anyway.
function readChangedFiles(hotFile) {
  if (!hotFile) return [];
  try {
    return fs.readFileSync(hotFile, 'utf8').split('\n').filter(Boolean);
  } catch (error) {
    return [];
  }
}

// Remove the routes directory's modules from require's cache and return them. All of them,
// not only the changed ones: index.js holds references to the modules it required, so it
// must be evaluated again for a changed users.js to take effect.
function forgetModules(dir) {
  const removed = {};
  for (const file of Object.keys(require.cache)) {
    if (file.startsWith(dir)) {
      removed[file] = require.cache[file];
      delete require.cache[file];
    }
  }
  // require() also lists each loaded module in its parent's `children`; without this every
  // reload would keep the old router reachable from this module, and leak it.
  module.children = module.children.filter((child) => !child.filename.startsWith(dir));
  return removed;
}

module.exports = { createHotRoutes };
