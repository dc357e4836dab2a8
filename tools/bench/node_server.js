'use strict';
// Serves the functions of a madrpc script over JSON-RPC 2.0 on HTTP from one
// plain Node process with jayson: the unsandboxed server scripts/bench-grid
// measures `madrpc serve` against. Params map onto arguments as in madrpc:
// an array is spread, an object is the single argument.
//
//   NODE_PATH=~/.cache/madrpc/tools/node/node_modules node tools/bench/node_server.js SCRIPT PORT
const path = require('node:path');
const jayson = require('jayson');
const [script, port] = process.argv.slice(2);
const functions = require('./madrpc_shim')(path.resolve(script));

const methods = {};
for (const [name, fn] of Object.entries(functions)) {
  methods[name] = (params, callback) => {
    Promise.resolve()
      .then(() => (Array.isArray(params) ? fn(...params) : params === undefined ? fn() : fn(params)))
      .then(
        (result) => callback(null, result === undefined ? null : result),
        (error) => callback({ code: -32000, message: String(error && error.message) }),
      );
  };
}
jayson
  .server(methods)
  .http()
  .listen(Number(port), '127.0.0.1', () => console.log(`serving on http://127.0.0.1:${port}/`));
