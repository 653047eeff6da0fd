// reloadd's warm process, for an ES module entry (see warm_boot.cjs). Node awaits the modules of
// `--import` before it loads the entry, so this is where the warm process can wait for an import:
// it imports the CommonJS packages warm_boot.cjs has just required (each under a URL of its own),
// which makes node read and lex their sources for their export names now, the slow part of
// wrapping a CommonJS package as an ES module, and then hands back to warm_boot.cjs for the
// "ready"/"go" exchange. The entry's own imports of those packages then build their wrappers from
// what node kept. Nothing here throws: an import that fails is the app's own import failing, and
// it says so itself.
const box = {};
process.emit('reloadd:warm-gate', box);
if (typeof box.go === 'function') {
  for (const url of box.urls) {
    try {
      await import(url);
    } catch {
      // the app's import of it will fail the same way, in the app's own words
    }
  }
  box.go();
}
