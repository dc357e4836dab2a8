'use strict';
// A trivial function and one that allocates `mb` megabytes of strings.

let counter = 0;
madrpc.register('count', () => ++counter);
madrpc.register('allocate', (mb) => {
  const parts = [];
  for (let i = 0; i < mb * 1000; i++) parts.push('x'.repeat(1000) + i);
  return parts.length;
});
