//! A throwaway PostgreSQL server: Debian's `postgresql` binaries, a fresh
//! cluster in a temporary directory, listening on a private port of
//! 127.0.0.1 with its socket in that directory. It stops when dropped,
//! also when the test fails. PostgreSQL refuses to run as root, so as root
//! it runs as the `postgres` user (through `setpriv`, which execs, so the
//! child is the server itself).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Postgres {
    child: Child,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    /// With [`Postgres::start_tls`]: the PEM file of the CA that signed the
    /// server's certificate.
    pub ca: Option<PathBuf>,
    port: u16,
    dir: tempfile::TempDir,
    /// Extra `-c name=value` settings of the server.
    settings: Vec<String>,
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup installs Debian's postgresql)")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server binary under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args...`, as the `postgres` user when running as root.
fn command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Postgres {
    /// Creates a cluster and starts the server; returns once it takes
    /// connections.
    pub fn start() -> Postgres {
        Postgres::create(false)
    }

    /// [`Postgres::start`] with TLS on, a certificate for 127.0.0.1 from a
    /// CA made for the test, and `hostssl` lines only in `pg_hba.conf`:
    /// connections without TLS are refused.
    pub fn start_tls() -> Postgres {
        Postgres::create(true)
    }

    fn create(tls: bool) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "cannot hand the directory to postgres");
        }
        let data = dir.path().join("data");
        let output = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (ca, settings) = if tls {
            let (ca, settings) = certificates(dir.path());
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("pg_hba.conf is written");
            (Some(ca), settings)
        } else {
            (None, Vec::new())
        };
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(status.success(), "cannot hand the files to postgres");
        }
        let port = free_port();
        let child = spawn(&bin, dir.path(), port, &settings);
        let mut server = Postgres {
            child,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            ca,
            port,
            dir,
            settings,
        };
        server.wait_ready(&bin);
        server
    }

    /// Stops the server and starts it again on the same data and port.
    pub fn restart(&mut self) {
        self.stop();
        let bin = bin_dir();
        self.child = spawn(&bin, self.dir.path(), self.port, &self.settings);
        self.wait_ready(&bin);
    }

    fn wait_ready(&mut self, bin: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not take connections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT ends the sessions and the server's own
    /// children), then a kill if it takes over 10 s.
    fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate it signed for 127.0.0.1, written into
/// `dir`; returns the CA's file and the server settings that use them.
fn certificates(dir: &Path) -> (PathBuf, Vec<String>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "madrpc test PostgreSQL CA");
    let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
    server_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("an address")));
    let server_key = KeyPair::generate().expect("a server key");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("a server certificate");
    let (ca_file, cert, key) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_file, ca.pem()).expect("the CA is written");
    std::fs::write(&cert, server.pem()).expect("the certificate is written");
    std::fs::write(&key, server_key.serialize_pem()).expect("the key is written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .expect("the key is made private");
    let settings = vec![
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", cert.display()),
        format!("ssl_key_file={}", key.display()),
    ];
    (ca_file, settings)
}

/// Starts `postgres` on the cluster in `dir`, with extra `-c` settings.
fn spawn(bin: &Path, dir: &Path, port: u16, settings: &[String]) -> Child {
    let mut command = command(&bin.join("postgres"));
    for setting in settings {
        command.args(["-c", setting]);
    }
    command
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
