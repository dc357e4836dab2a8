// expect: guest_threw
// The QuickJS std and os modules: files, environment, processes.
madrpc.register('wasi_std_and_os', () => {
  const passwd = std.loadFile('/etc/passwd');
  os.exec(['/bin/sh', '-c', 'id']);
  return passwd;
});
