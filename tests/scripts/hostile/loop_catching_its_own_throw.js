// expect: fuel_exhausted
// A loop that throws and catches forever: a thrown value cannot break out.
madrpc.register('loop_catching_its_own_throw', () => {
  for (;;) {
    try {
      throw new Error('again');
    } catch (error) {
      // keep going
    }
  }
});
