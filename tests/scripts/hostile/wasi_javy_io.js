// expect: guest_threw
// Reaching for the file descriptors behind Javy's IO.
madrpc.register('wasi_javy_io', () => {
  const buffer = new Uint8Array(1024);
  return Javy.IO.readSync(0, buffer);
});
