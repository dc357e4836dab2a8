'use strict';
// The smallest useful script: a few functions a client can call.

madrpc.register('hello', ({ name = 'world' } = {}) => ({ greeting: `hello, ${name}` }));
madrpc.register('add', (a, b) => a + b);
madrpc.register('noop', () => null);
