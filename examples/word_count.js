'use strict';
// Map-reduce word count: `count_words` splits a text into chunks, fans one
// `map_chunk` out per chunk across the grid, and merges the partial counts.
//
//   madrpc run examples/word_count.js count_words '{"text": "the cat and the hat", "chunks": 2}'

const tokenize = (text) => text.toLowerCase().match(/[\p{L}\p{N}']+/gu) || [];

madrpc.register('map_chunk', ({ words }) => {
  const counts = {};
  for (const word of words) counts[word] = (counts[word] || 0) + 1;
  return counts;
});

madrpc.register('count_words', async ({ text = '', chunks = 4, top = 10 } = {}) => {
  const words = tokenize(text);
  const size = Math.max(1, Math.ceil(words.length / chunks));
  const parts = [];
  for (let start = 0; start < words.length; start += size) parts.push(words.slice(start, start + size));
  const partials = await Promise.all(parts.map((chunk) => madrpc.call('map_chunk', { words: chunk })));
  const totals = new Map();
  for (const partial of partials) {
    for (const [word, count] of Object.entries(partial)) totals.set(word, (totals.get(word) || 0) + count);
  }
  const ranked = [...totals].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return { words: words.length, unique: totals.size, chunks: parts.length, top: Object.fromEntries(ranked.slice(0, top)) };
});
