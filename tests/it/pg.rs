//! PostgreSQL for tests: `KEYWARD_TEST_DATABASE_URL` if set, otherwise one throwaway cluster
//! per test run (`initdb` + `pg_ctl` from the machine's PostgreSQL server package, on a free
//! port, as the `postgres` user when running as root), removed when the test process exits.
//! Every test gets a fresh database in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// A running cluster the tests own.
pub struct Cluster {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub as_postgres_user: bool,
    /// Further server options (`-c name=value …`).
    pub options: String,
}

static BASE_URL: OnceLock<Result<String, String>> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A URL of a fresh, empty database.
pub async fn fresh_database() -> String {
    let base = BASE_URL
        .get_or_init(|| match std::env::var("KEYWARD_TEST_DATABASE_URL") {
            Ok(url) => Ok(url),
            Err(_) => Cluster::start().map(|c| c.url("postgres")),
        })
        .clone()
        .unwrap_or_else(|e| panic!("no PostgreSQL for tests: {e}"));
    let name = format!(
        "kw_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    replace_database(&base, &name)
}

fn replace_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(slash) => &head[..scheme_end + slash],
        None => head,
    };
    format!("{base}/{name}{query}")
}

fn find_bin_dir() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| dir.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates
        .into_iter()
        .rev()
        .find(|p| p.join("initdb").is_file())
        .ok_or_else(|| {
            "initdb not found under /usr/lib/postgresql/*/bin: install the postgresql package"
                .into()
        })
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on now (for a server the tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Starts a new cluster and arranges for its removal when this process exits.
    pub fn start() -> Result<Cluster, String> {
        Self::start_with_tls(None)
    }

    /// Starts a new cluster that also accepts TLS (`ssl=on`) with this certificate and key
    /// (PEM), when given.
    pub fn start_with_tls(tls: Option<(&str, &str)>) -> Result<Cluster, String> {
        let bin = find_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("keyward-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let as_postgres_user = is_root();
        if as_postgres_user {
            // PostgreSQL refuses to run as root: hand the directory to the postgres user.
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let cluster = Cluster {
            bin,
            data: dir.join("data"),
            port: free_port(),
            as_postgres_user,
            options: if tls.is_some() {
                "-c ssl=on".into()
            } else {
                String::new()
            },
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                path(&cluster.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let file = cluster.data.join(name);
                std::fs::write(&file, pem).map_err(|e| e.to_string())?;
                run(Command::new("chmod").arg("600").arg(&file))?;
                if as_postgres_user {
                    run(Command::new("chown").arg("postgres:postgres").arg(&file))?;
                }
            }
        }
        cluster.start_server(&dir)?;
        cluster.remove_on_exit(&dir);
        Ok(cluster)
    }

    /// Restarts a stopped cluster (for outage tests).
    pub fn restart(&self) -> Result<(), String> {
        self.start_server(self.data.parent().expect("data dir has a parent"))
    }

    /// Starts (or restarts) the server of an initialized cluster.
    pub fn start_server(&self, dir: &Path) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 {}",
            self.port,
            path(dir),
            self.options
        );
        let log = dir.join("postgres.log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-o",
                &options,
                "-l",
                path(&log),
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server, disconnecting every client (for outage tests). `fast`, not
    /// `immediate`: with `synchronous_commit=off` an immediate stop may lose the last commits.
    pub fn stop_server(&self) -> Result<(), String> {
        self.pg(
            "pg_ctl",
            &["-D", path(&self.data), "-m", "fast", "-w", "stop"],
        )
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        run(command.args(args).current_dir("/"))
    }

    /// A watchdog shell stops the cluster and deletes its files once this process is gone.
    fn remove_on_exit(&self, dir: &Path) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.as_postgres_user {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                path(&pg_ctl),
                path(&self.data)
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                path(&pg_ctl),
                path(&self.data)
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = path(dir),
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// PostgreSQL's change feed (`keyward_changes`) of one database, as a test reads it.
pub struct ChangeFeed {
    pool: sqlx::PgPool,
    listener: sqlx::postgres::PgListener,
}

impl ChangeFeed {
    /// Starts listening; every notification sent from now on is read by [`Self::drain`].
    pub async fn listen(url: &str) -> ChangeFeed {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .unwrap();
        listener.listen("keyward_changes").await.unwrap();
        ChangeFeed { pool, listener }
    }

    /// The payloads sent since listening (or the last drain). Notifications arrive in commit
    /// order, so a marker sent now comes after every one of them.
    pub async fn drain(&mut self) -> Vec<String> {
        sqlx::query("SELECT pg_notify('keyward_changes', 'end-of-test')")
            .execute(&self.pool)
            .await
            .unwrap();
        let mut carried = Vec::new();
        loop {
            let n = self.listener.recv().await.unwrap();
            if n.payload() == "end-of-test" {
                return carried;
            }
            carried.push(n.payload().to_owned());
        }
    }
}
