// expect: guest_threw
// Looking for any host object through the global object and Function.
madrpc.register('wasi_through_globals', () => {
  const global = new Function('return this')();
  const host = global.process || global.require || global.fetch || global.WebAssembly || global.Deno;
  return host.env;
});
