'use strict';
// The JavaScript of a script written for the original MaDRPC.

class Accumulator {
  constructor(start = 0) { this.total = start; }
  add(value) { this.total += value; return this; }
}

const histogram = (words) => {
  const counts = new Map();
  for (const word of words) counts.set(word, (counts.get(word) || 0) + 1);
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
};

madrpc.register('word_count', ({ text = '', min_length: minLength = 1 } = {}) => {
  const words = text.toLowerCase().match(/[a-z']+/g) || [];
  const unique = new Set(words.filter((w) => w.length >= minLength));
  return { unique: unique.size, counts: histogram(words.filter((w) => unique.has(w))) };
});

madrpc.register('sum', (...values) => values.reduce((acc, v) => acc.add(v), new Accumulator()).total);

madrpc.register('parallel_squares', async ({ values }) => {
  const square = async (v) => { await null; return v * v; };
  const [squares, [first, ...rest]] = await Promise.all([Promise.all(values.map(square)), Promise.resolve(values)]);
  return { squares, first, rest };
});
