// expect: result_too_large
// One string far over --max-result.
madrpc.register('huge_result', () => 'y'.repeat(100000));
