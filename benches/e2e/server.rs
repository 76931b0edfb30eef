//! The example server as a child process, and the CPU time processes use.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{AUDIENCE, Error, ISSUER, PUBLIC_URL};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The example server as a child process, killed when dropped (on error and panic too).
pub struct Server {
    child: Child,
    jwks: PathBuf,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(executable: &Path, jwks: &str) -> Result<Server, Error> {
        let jwks_path = std::env::temp_dir().join(format!("tog-e2e-{}.jwks", std::process::id()));
        std::fs::write(&jwks_path, jwks)?;
        let child = Command::new(executable)
            .args(["--listen", "127.0.0.1:0", "--dpop", "allowed"])
            .args([
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
                "--public-url",
                PUBLIC_URL,
            ])
            .arg("--jwks")
            .arg(&jwks_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", executable.display()))?;
        let mut server = Server {
            child,
            jwks: jwks_path,
            addr: ([127, 0, 0, 1], 0).into(),
        };
        let stdout = server.child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address, then drains the pipe so that the server never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx.recv_timeout(STARTUP_TIMEOUT).map_err(|_| {
            let status = server.child.try_wait().ok().flatten();
            format!("the server did not say it listens (exit status: {status:?})")
        })?;
        server.addr = addr.parse()?;
        Ok(server)
    }

    /// CPU time the server's threads have used so far, where known.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.child.id().to_string())
    }

    /// An error if the server has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("the server exited: {status}").into()),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.jwks);
    }
}

/// CPU time this process's threads have used so far, where known.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time("self")
}

/// CPU time the threads of process `pid` ("self": this one) have used, the sum of the first
/// fields of `/proc/PID/task/*/schedstat` (nanoseconds); `None` without them (not Linux).
fn cpu_time(pid: &str) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Some(Duration::from_nanos(nanos))
}
