// expect: guest_threw
// Loading a module at run time.
madrpc.register('wasi_dynamic_import', async () => {
  const fs = await import('fs');
  return fs.readFileSync('/etc/passwd', 'utf8');
});
