'use strict';
// Loads a madrpc script in plain Node: its top level runs as it does at
// `madrpc build`, and `madrpc.register` collects its functions. The
// benchmarks run the very functions madrpc serves, without a sandbox.
module.exports = (file) => {
  const functions = {};
  globalThis.madrpc = {
    register: (name, fn) => {
      functions[name] = fn;
    },
  };
  require(file);
  return functions;
};
