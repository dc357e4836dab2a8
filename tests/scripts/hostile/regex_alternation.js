// expect: fuel_exhausted
// Catastrophic backtracking through overlapping alternatives.
madrpc.register('regex_alternation', () => /^(a|a?)+$/.test('a'.repeat(64) + 'b'));
