//! Valkey/Redis for tests: `KEYWARD_TEST_REDIS_URL` if set, otherwise one throwaway
//! `valkey-server` or `redis-server` per test run on a free port (no persistence), stopped when
//! the test process exits. Every test gets a fresh logical database in it. Tests that stop the
//! engine or count its commands start one of their own ([`Engine::start`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::pg::free_port;

/// Logical databases of the engines the tests start: one per test that asks.
const DATABASES: u32 = 4096;

static SHARED: OnceLock<Result<String, String>> = OnceLock::new();
static SHARED_ENGINE: OnceLock<Engine> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// The URL of a fresh, empty logical database.
pub fn fresh_url() -> String {
    let base = SHARED
        .get_or_init(|| match std::env::var("KEYWARD_TEST_REDIS_URL") {
            Ok(url) => Ok(url.trim_end_matches('/').to_owned()),
            Err(_) => Engine::start().map(|engine| {
                let url = engine.base_url();
                let _ = SHARED_ENGINE.set(engine);
                url
            }),
        })
        .clone()
        .unwrap_or_else(|e| panic!("no Valkey/Redis for tests: {e}"));
    let database = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
    if std::env::var("KEYWARD_TEST_REDIS_URL").is_ok() {
        // A server of the machine's has the default 16 databases.
        return format!("{base}/{}", database % 16);
    }
    format!("{base}/{database}")
}

/// An engine server the tests own.
pub struct Engine {
    pub port: u16,
    program: PathBuf,
    dir: PathBuf,
    child: Mutex<Option<std::process::Child>>,
}

fn find_program() -> Result<PathBuf, String> {
    ["valkey-server", "redis-server"]
        .iter()
        .flat_map(|name| {
            ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
                .iter()
                .map(move |dir| PathBuf::from(dir).join(name))
        })
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "neither valkey-server nor redis-server is installed (Debian package redis-server)"
                .into()
        })
}

impl Engine {
    /// Starts a new server on a free port.
    pub fn start() -> Result<Engine, String> {
        let dir = tempfile::Builder::new()
            .prefix("keyward-valkey-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let engine = Engine {
            port: free_port(),
            program: find_program()?,
            dir,
            child: Mutex::new(None),
        };
        engine.restart()?;
        Ok(engine)
    }

    /// `redis://127.0.0.1:PORT`, without a database.
    pub fn base_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL of logical database 0.
    pub fn url(&self) -> String {
        format!("{}/0", self.base_url())
    }

    /// Starts the server (again, after [`Engine::stop`]) and waits until it answers.
    pub fn restart(&self) -> Result<(), String> {
        let child = Command::new(&self.program)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--databases",
                &DATABASES.to_string(),
                "--dir",
                self.dir.to_str().expect("temp paths are UTF-8"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.program.display()))?;
        stop_on_exit(child.id());
        *self.child.lock().unwrap() = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self
                .command("PING")
                .is_ok_and(|answer| answer.starts_with("+PONG"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "{} did not answer within 10 s",
            self.program.display()
        ))
    }

    /// Stops the server at once (an outage).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one inline command and returns the raw reply.
    pub fn command(&self, command: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reply = Vec::new();
        let mut buffer = [0u8; 65536];
        loop {
            let n = stream.read(&mut buffer)?;
            reply.extend_from_slice(&buffer[..n]);
            if n == 0 || complete(&reply) {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Commands the server has executed so far, from `INFO commandstats` (those scripts
    /// call included), without the `INFO` calls that read it.
    pub fn commands(&self) -> u64 {
        let info = self.command("INFO commandstats").expect("INFO answers");
        info.lines()
            .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
            .filter_map(|line| {
                let calls = line.split("calls=").nth(1)?;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

/// Whether a RESP reply is whole: a simple line, or a bulk string of its announced length.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply.first() != Some(&b'$') {
        return true;
    }
    let length: i64 = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    length < 0 || reply.len() >= end + 2 + usize::try_from(length).unwrap_or(0) + 2
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A watchdog shell stops the server once this process is gone.
fn stop_on_exit(pid: u32) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null",
        me = std::process::id(),
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
