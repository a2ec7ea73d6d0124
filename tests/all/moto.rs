//! The AWS emulator the AWS tests run against: a moto server (PyPI `moto[server]`, the
//! version `cargo xtask moto` installs) on a free loopback port, started per test, polled
//! until it accepts connections (with a deadline, no fixed sleeps), killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

pub fn server_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CTRFLOW_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/ctrflow/moto-venv/bin/moto_server")
}

impl Moto {
    /// Starts a fresh server (empty state) on a free port.
    pub fn start() -> Moto {
        let server = server_path();
        assert!(
            server.exists(),
            "moto server is missing at {}: run `cargo xtask moto` (or `cargo xtask test`, which installs it)",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
        let mut moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto server exited at start ({status})");
            }
            assert!(Instant::now() < deadline, "moto server did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(25));
        }
        moto
    }

    /// The environment a `ctrflow` child process needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            // No profile files or instance metadata lookups from the test machine.
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// SDK settings for the test's own clients (setup and read-back).
    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }
}

impl Moto {
    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered — a destination that hangs, with its state kept for [`Moto::resume`].
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Lets a paused server answer again (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
