//! Real servers for the integration tests, each started on its own free port of 127.0.0.1.
//!
//! - [`Moto`]: `moto_server` (PyPI `moto[server]`), standing in for S3, SQS, SNS, DynamoDB,
//!   CloudWatch and the rest of AWS.
//! - [`Postgres`]: a throw-away PostgreSQL cluster from Debian's `postgresql` package, standing
//!   in for Aurora PostgreSQL and Redshift.
//! - [`HttpServer`]: an in-process HTTP/1.1 server (hyper) that records every request and answers
//!   with a scripted sequence of statuses.
//! - [`RuntimeApi`]: the AWS Lambda Runtime API, either served by cargo-lambda
//!   ([`RuntimeApi::start`]) or by an in-process server ([`RuntimeApi::start_builtin`]), so the
//!   real host binary runs under the real `lambda_runtime` client and events are sent to it.
//! - [`ChildProcess`]: a child process in its own process group whose output goes to a log file,
//!   killed on drop (used for the servers above, and handy for the function under test).
//!
//! Every constructor waits, for a bounded time, until its server answers, and fails with the
//! server's own output when it does not. Everything is stopped on drop: the process group is
//! killed and temporary directories are removed. Ports are picked by binding 127.0.0.1:0; a server
//! that then finds its port taken is started again on another one.
//!
//! External programs come from `scripts/setup` (`moto_server`, `cargo-lambda`, PostgreSQL).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tempfile::TempDir;

/// How long a server may take to come up before its start fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports are tried when a server finds its port already taken.
const PORT_ATTEMPTS: usize = 4;
/// How long a stopping process gets between the polite signal and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Ports, processes and small helpers
// ---------------------------------------------------------------------------------------------

/// Ports this process already handed out, so two servers of one test binary never race for one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A port of 127.0.0.1 that was free a moment ago and that this process has not handed out yet.
fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        if lock(&HANDED_OUT).insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port found on 127.0.0.1")
}

/// Runs `start` on a fresh free port, and again on another one while the server reports that its
/// port is already in use (another process may take a port between our probe and its bind).
fn on_free_port<T>(mut start: impl FnMut(u16) -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        match start(port) {
            Ok(server) => return Ok(server),
            Err(err) if attempt < PORT_ATTEMPTS && is_addr_in_use(&err) => attempt += 1,
            Err(err) => return Err(err),
        }
    }
}

fn is_addr_in_use(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}").to_ascii_lowercase();
    // "Address already in use" (libc, Python, PostgreSQL), "Address in use" (Rust's io::Error).
    text.contains("address already in use") || text.contains("address in use")
}

/// Runs an async block to completion on a private current-thread runtime in a helper thread, so
/// it works the same from plain tests and from inside another tokio runtime.
fn block_on_thread<T: Send>(future: impl Future<Output = Result<T>> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("build a tokio runtime")?
                    .block_on(future)
            })
            .join()
            .map_err(|_| anyhow!("helper thread panicked"))?
    })
}

/// Sends one bodiless HTTP/1.1 request over a fresh connection and returns the status code.
/// Only for readiness probes and control calls, where pulling in a full client is not worth it.
fn raw_http_status(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP status line: {line:?}")))
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A child process in its own process group, with stdout and stderr appended to a log file.
/// Dropping it signals the whole group (SIGTERM unless another signal was chosen), waits a little,
/// then SIGKILLs what is left.
pub struct ChildProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
    stop_signal: rustix::process::Signal,
    /// Holds the log file when the caller gave none; removed after the process is gone.
    _log_dir: Option<TempDir>,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl ChildProcess {
    /// Spawns `command` in a new process group with stdin closed and stdout/stderr going to a log
    /// file in a new temporary directory (see [`ChildProcess::log`]). `name` is used in errors.
    pub fn spawn(name: &str, command: Command) -> Result<ChildProcess> {
        let dir = tempfile::Builder::new().prefix("child-log-").tempdir()?;
        let log_path = dir.path().join(format!("{}.log", sanitize(name)));
        let mut process = Self::spawn_logged(name, command, &log_path)?;
        process._log_dir = Some(dir);
        Ok(process)
    }

    fn spawn_logged(name: &str, mut command: Command, log_path: &Path) -> Result<ChildProcess> {
        let log = File::create(log_path)
            .with_context(|| format!("create log file {}", log_path.display()))?;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().with_context(|| {
            format!(
                "start {name} ({:?}); is it installed? `scripts/setup` installs the test servers",
                command.get_program()
            )
        })?;
        Ok(ChildProcess {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
            stop_signal: rustix::process::Signal::TERM,
            _log_dir: None,
        })
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// An error saying the process failed to `what`, with its exit status and the end of its log.
    fn failure(&mut self, what: &str) -> anyhow::Error {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("it exited with {status}"),
            Ok(None) => "it is still running".to_owned(),
            Err(err) => format!("its status is unknown ({err})"),
        };
        anyhow!(
            "{} {what}; {status}. Its output ({}):\n{}",
            self.name,
            self.log_path.display(),
            tail(&self.log(), 6000)
        )
    }

    /// Polls `ready` until it returns true, failing when the process exits or time runs out.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Self) -> bool) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            if ready(self) {
                return Ok(());
            }
            if self.child.try_wait()?.is_some() {
                return Err(self.failure(&format!("exited before {what}")));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("did not {what} within {START_TIMEOUT:?}")));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Signals the process group and waits for the leader; SIGKILLs the group after a grace time.
    fn stop(&mut self) {
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return;
        };
        let Some(group) = rustix::process::Pid::from_raw(raw) else {
            return;
        };
        let _ = rustix::process::kill_process_group(group, self.stop_signal);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (children of the leader, or the leader itself).
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---------------------------------------------------------------------------------------------
// Moto
// ---------------------------------------------------------------------------------------------

/// A `moto_server` process answering every AWS service on one port of 127.0.0.1.
#[derive(Debug)]
pub struct Moto {
    process: ChildProcess,
    port: u16,
    dir: TempDir,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until it answers HTTP (about 1-2 s).
    pub fn start() -> Result<Moto> {
        on_free_port(Moto::start_on)
    }

    fn start_on(port: u16) -> Result<Moto> {
        let dir = tempfile::Builder::new().prefix("moto-").tempdir()?;
        let mut command = Command::new("moto_server");
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1");
        let mut process =
            ChildProcess::spawn_logged("moto_server", command, &dir.path().join("moto.log"))?;
        // Werkzeug prints "Running on http://127.0.0.1:PORT" once it has bound the port, so the
        // answer comes from this moto and not from whatever else might hold the port.
        let bound = format!("Running on http://127.0.0.1:{port}");
        process.wait_until("answer HTTP", |p| {
            p.log().contains(&bound) && raw_http_status(port, "GET", "/moto-api/").is_ok()
        })?;
        Ok(Moto { process, port, dir })
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment an AWS SDK client (or a child process using one) needs to talk to this
    /// moto: the endpoint (`AWS_ENDPOINT_URL`), dummy credentials, region `us-east-1`, no
    /// instance-metadata lookups, and shared config/credentials files that do not exist, so
    /// nothing from `~/.aws` leaks in.
    ///
    /// S3 path-style addressing has no environment variable in the AWS SDK for Rust (only the
    /// client config's `force_path_style`). None is needed here: the endpoint is an IP literal,
    /// and aws-sdk-s3's endpoint rules force path style for those ("ip address causes path style
    /// to be forced" in its endpoint tests). With a host name such as `localhost` they would not.
    pub fn env(&self) -> Vec<(String, String)> {
        let missing = |name: &str| self.dir.path().join(name).display().to_string();
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", missing("no-aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", missing("no-aws-credentials")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Forgets every resource moto holds (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<()> {
        match raw_http_status(self.port, "POST", "/moto-api/reset") {
            Ok(200) => Ok(()),
            Ok(status) => bail!("moto reset answered HTTP {status}"),
            Err(err) => Err(anyhow!(err).context("moto reset")),
        }
    }

    /// What moto printed so far (its request log and errors).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A throw-away PostgreSQL cluster listening on 127.0.0.1 only.
///
/// The cluster is created with `initdb` in a temporary directory. Running as root, `initdb` and
/// `postgres` run as the `postgres` system user (the directory is handed to it); otherwise as the
/// current user. Connections over TCP need the password (SCRAM-SHA-256, as on Aurora); no Unix
/// socket is opened. Durability is switched off (`fsync`, `synchronous_commit`,
/// `full_page_writes`) for speed, and clusters live in /dev/shm when it is usable. Starting
/// takes about 0.3 s (about 1.5 s more the first time on a machine, to build the template).
#[derive(Debug)]
pub struct Postgres {
    // Declared before the cluster so the server stops before its data directory is removed.
    process: ChildProcess,
    port: u16,
    _cluster: Cluster,
}

impl Postgres {
    /// The superuser the cluster is created with.
    pub const USER: &'static str = "test";
    /// The superuser's password.
    pub const PASSWORD: &'static str = "test-password";
    /// The database created for the tests.
    pub const DATABASE: &'static str = "test";

    /// Creates a cluster, starts it on a free port and creates the database [`Postgres::DATABASE`].
    ///
    /// The first start on a machine builds a template cluster (`initdb`, then the database) and
    /// keeps it (`postprocess-tests-postgres-*`, about 30 MB, in /dev/shm or else the temporary
    /// directory); every start copies it, which saves about a second per server.
    pub fn start() -> Result<Postgres> {
        let cluster = Cluster::from_template()?;
        let (process, port) = on_free_port(|port| Ok((cluster.launch(port)?, port)))?;
        Ok(Postgres {
            process,
            port,
            _cluster: cluster,
        })
    }

    /// `postgres://test:test-password@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        self.url_for(Self::DATABASE)
    }

    /// The connection URL of another database of this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}",
            Self::USER,
            Self::PASSWORD,
            self.port
        )
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates another database (for tests that want one each) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        self.execute_in(Self::DATABASE, &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url_for(name))
    }

    /// Runs SQL statements (no results) in `database`, blocking.
    pub fn execute_in(&self, database: &str, sql: &str) -> Result<()> {
        execute(&self.url_for(database), sql)
            .map_err(|err| err.context(format!("server log:\n{}", tail(&self.log(), 3000))))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A PostgreSQL data directory made by `initdb` in a temporary directory, owned by the user the
/// server runs as.
#[derive(Debug)]
struct Cluster {
    dir: TempDir,
    bin: PathBuf,
    /// uid and gid to run as (the `postgres` user) when we are root.
    owner: Option<(u32, u32)>,
}

impl Cluster {
    fn init(user: &str, password: &str) -> Result<Cluster> {
        let (bin, owner) = postgres_bin_and_owner()?;
        let dir = owned_temp_dir(owner)?;
        let password_file = dir.path().join("password");
        fs::write(&password_file, password)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&password_file, Some(uid), Some(gid))?;
        }
        let cluster = Cluster { dir, bin, owner };
        let output = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data())
            .args([
                "-U",
                user,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
                // 1 MB WAL segments instead of 16 MB: smaller clusters, quicker copies.
                "--wal-segsize=1",
            ])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .context("run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed with {}:\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(cluster)
    }

    /// A new cluster whose data directory is a copy of the template (built on first use).
    fn from_template() -> Result<Cluster> {
        let (bin, owner) = postgres_bin_and_owner()?;
        let template = Cluster::template(&bin, owner)?;
        let dir = owned_temp_dir(owner)?;
        let cluster = Cluster { dir, bin, owner };
        let output = Command::new("cp")
            .arg("-a")
            .arg(template.join("data"))
            .arg(cluster.data())
            .output()
            .context("run cp")?;
        if !output.status.success() {
            bail!(
                "copying the PostgreSQL template {} failed: {}",
                template.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(cluster)
    }

    /// The template: a stopped cluster with [`Postgres::DATABASE`] created, kept across runs.
    /// Built in a staging directory and renamed into place with a `ready` marker, so concurrent
    /// test processes never see half of one.
    fn template(bin: &Path, owner: Option<(u32, u32)>) -> Result<PathBuf> {
        let version = bin
            .parent()
            .and_then(Path::file_name)
            .map_or_else(|| "pg".into(), |name| name.to_string_lossy().into_owned());
        let uid = owner.map_or_else(|| rustix::process::geteuid().as_raw(), |(uid, _)| uid);
        let path =
            postgres_base_dir().join(format!("postprocess-tests-postgres-{version}-uid{uid}-v2"));
        if path.join("ready").is_file() {
            return Ok(path);
        }

        let staging = Cluster::init(Postgres::USER, Postgres::PASSWORD)?;
        let (mut process, port) = on_free_port(|port| Ok((staging.launch(port)?, port)))?;
        let url = format!(
            "postgres://{}:{}@127.0.0.1:{port}/postgres",
            Postgres::USER,
            Postgres::PASSWORD
        );
        execute(&url, &format!("CREATE DATABASE \"{}\"", Postgres::DATABASE))
            .map_err(|err| err.context(format!("server log:\n{}", tail(&process.log(), 3000))))?;
        // A fast shutdown (SIGINT) leaves a clean, checkpointed data directory.
        process.stop_signal = rustix::process::Signal::INT;
        drop(process);
        let data = staging.data();
        if data.join("postmaster.pid").exists() {
            bail!(
                "the template cluster in {} did not shut down cleanly",
                data.display()
            );
        }
        fs::remove_file(staging.dir.path().join("password"))?;
        fs::write(staging.dir.path().join("ready"), "")?;
        let staged = staging.dir.keep();
        for attempt in 0..2 {
            match fs::rename(&staged, &path) {
                Ok(()) => return Ok(path),
                // Another test process finished its template first: use that one.
                Err(_) if path.join("ready").is_file() => break,
                // Left over from an interrupted older run (never renamed without `ready`).
                Err(_) if attempt == 0 => {
                    let _ = fs::remove_dir_all(&path);
                }
                Err(err) => {
                    let _ = fs::remove_dir_all(&staged);
                    return Err(anyhow!(err).context(format!(
                        "move the PostgreSQL template to {}",
                        path.display()
                    )));
                }
            }
        }
        let _ = fs::remove_dir_all(&staged);
        Ok(path)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL program, run as the cluster's owner from the cluster's directory.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env("TZ", "UTC");
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts `postgres` on 127.0.0.1:`port` only and waits until it accepts connections.
    fn launch(&self, port: u16) -> Result<ChildProcess> {
        let mut command = self.command("postgres");
        command.arg("-D").arg(self.data());
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={port}"),
            "unix_socket_directories=".to_owned(),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "max_connections=100".to_owned(),
        ] {
            command.arg("-c").arg(setting);
        }
        let log_path = self.dir.path().join("postgres.log");
        let mut process = ChildProcess::spawn_logged("postgres", command, &log_path)?;
        // SIGQUIT is PostgreSQL's immediate shutdown: quick, and it still frees shared memory.
        process.stop_signal = rustix::process::Signal::QUIT;
        process.wait_until("accept connections", |p| {
            // Only this postmaster writes this log, so the line proves the port is its own.
            p.log()
                .contains("database system is ready to accept connections")
        })?;
        Ok(process)
    }
}

/// The PostgreSQL `bin` directory, and the uid and gid to run it as (`postgres`) when we are root.
fn postgres_bin_and_owner() -> Result<(PathBuf, Option<(u32, u32)>)> {
    let bin = postgres_bin_dir()?;
    let owner = if rustix::process::geteuid().is_root() {
        Some(system_user("postgres")?)
    } else {
        None
    };
    Ok((bin, owner))
}

/// Where clusters live: /dev/shm when usable (tmpfs: copying and initdb are several times
/// faster there than on a busy disk), else the temporary directory.
fn postgres_base_dir() -> &'static Path {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let usable = shm.is_dir()
            && tempfile::Builder::new()
                .prefix("probe-")
                .tempdir_in(shm)
                .is_ok();
        if usable {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        }
    })
}

/// A new temporary directory for a cluster, handed to `owner` when given.
fn owned_temp_dir(owner: Option<(u32, u32)>) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("postprocess-postgres-")
        .tempdir_in(postgres_base_dir())?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    Ok(dir)
}

/// Runs SQL statements (no results) over a new connection to `url`, blocking.
fn execute(url: &str, sql: &str) -> Result<()> {
    block_on_thread(async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connect to {url}"))?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("run {sql:?}"))?;
        drop(client);
        let _ = connection.await;
        Ok(())
    })
}

/// The `bin` directory of the newest PostgreSQL server under /usr/lib/postgresql (Debian's
/// layout), or `$PG_BIN_DIR` when set.
fn postgres_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no PostgreSQL server under {} (need bin/initdb and bin/postgres): run scripts/setup",
            root.display()
        ),
    }
}

/// The uid and gid of a user from /etc/passwd.
fn system_user(name: &str) -> Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("read /etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == name)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| anyhow!("no user {name:?} in /etc/passwd: run scripts/setup"))
}

// ---------------------------------------------------------------------------------------------
// In-process HTTP servers
// ---------------------------------------------------------------------------------------------

pub(crate) type BoxedResponse = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>) -> BoxedResponse + Send + Sync>;

/// A hyper HTTP/1.1 server on its own thread and current-thread runtime, so it works whatever
/// runtime (if any) the test uses. Stopped (thread joined, connections closed) on drop.
pub(crate) struct InProcessServer {
    pub(crate) addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for InProcessServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl InProcessServer {
    pub(crate) fn start(name: &str, handler: Handler) -> Result<InProcessServer> {
        // Bound here, before the thread starts: the port is ours, with no window for a race.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        eprintln!("in-process server: {err}");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            };
                            let handler = handler.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |request| {
                                    let response = handler(request);
                                    async move { Ok::<_, Infallible>(response.await) }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
                // Dropping the runtime here cancels the connection tasks (and any long poll).
            })?;
        Ok(InProcessServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", body.to_string())
}

/// One request received by an [`HttpServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method, e.g. `POST`.
    pub method: String,
    /// The path with its query string, e.g. `/hook?x=1`.
    pub path: String,
    /// The headers in the order received, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn body_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("request body is not JSON")
    }
}

#[derive(Debug, Default)]
struct HttpState {
    requests: Vec<RecordedRequest>,
    statuses: VecDeque<u16>,
}

/// An in-process HTTP/1.1 server on 127.0.0.1 that records every request and answers with the
/// statuses given to [`HttpServer::respond_with`], in order, then 200. Each answer's body is
/// `{"status":N}` (JSON).
#[derive(Debug)]
pub struct HttpServer {
    server: InProcessServer,
    state: Arc<Mutex<HttpState>>,
}

impl HttpServer {
    /// Starts the server on a free port; it answers at once.
    pub fn start() -> Result<HttpServer> {
        let state = Arc::new(Mutex::new(HttpState::default()));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request: Request<Incoming>| {
            let state = shared.clone();
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                let body = match body.collect().await {
                    Ok(collected) => collected.to_bytes().to_vec(),
                    Err(err) => {
                        return respond(StatusCode::BAD_REQUEST, "text/plain", err.to_string());
                    }
                };
                let recorded = RecordedRequest {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or("/", |pq| pq.as_str())
                        .to_owned(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(name, value)| {
                            (
                                name.as_str().to_owned(),
                                String::from_utf8_lossy(value.as_bytes()).into_owned(),
                            )
                        })
                        .collect(),
                    body,
                };
                let status = {
                    let mut state = lock(&state);
                    state.requests.push(recorded);
                    state.statuses.pop_front().unwrap_or(200)
                };
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                json_response(code, &serde_json::json!({ "status": status }))
            })
        });
        let server = InProcessServer::start("http-server", handler)?;
        Ok(HttpServer { server, state })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Waits until at least `count` requests arrived and returns all of them; fails after `timeout`.
    pub fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} of {count} requests arrived within {timeout:?}",
                    requests.len()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Answers the next requests with these statuses, in order; 200 once they are used up.
    /// Replaces statuses still pending from an earlier call.
    pub fn respond_with(&self, statuses: Vec<u16>) {
        lock(&self.state).statuses = statuses.into();
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Lambda Runtime API
// ---------------------------------------------------------------------------------------------

/// What an invocation through a [`RuntimeApi`] ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeOutcome {
    /// The function answered; this is its response body.
    Response(String),
    /// The function reported an error (its `/error` or `/init/error` body, JSON with
    /// `errorType` and `errorMessage`).
    FunctionError(String),
}

/// The Lambda Runtime API, for running the real function binary under the real `lambda_runtime`
/// client. Start the function process with [`RuntimeApi::env`] in its environment, then send
/// events with [`RuntimeApi::invoke`].
///
/// Two servers are available:
/// - [`RuntimeApi::start`]: cargo-lambda's emulator (`cargo lambda watch --only-lambda-apis`).
///   It sends `Lambda-Runtime-Deadline-Ms: 600000` (a constant, not a time since the epoch), so
///   a function that budgets by its deadline sees it long expired; the ARN is `function-arn`.
/// - [`RuntimeApi::start_builtin`]: an in-process server that sends a real deadline (now plus the
///   given timeout), a well-formed ARN and trace id, and reports init errors. Prefer it for
///   anything that depends on the deadline.
#[derive(Debug)]
pub struct RuntimeApi {
    backend: Backend,
    timeout: Duration,
}

#[derive(Debug)]
enum Backend {
    CargoLambda {
        process: ChildProcess,
        port: u16,
        _dir: TempDir,
    },
    Builtin {
        server: InProcessServer,
        state: Arc<RuntimeState>,
    },
}

impl RuntimeApi {
    /// The function name given to the function process.
    pub const FUNCTION_NAME: &'static str = "postprocess-test";
    /// The ARN the built-in server hands out.
    pub const FUNCTION_ARN: &'static str =
        "arn:aws:lambda:us-east-1:123456789012:function:postprocess-test";
    /// Extra time [`RuntimeApi::invoke`] waits beyond the function timeout (for a slow start).
    const INVOKE_GRACE: Duration = Duration::from_secs(30);

    /// Starts cargo-lambda's Runtime API emulator on a free port of 127.0.0.1
    /// (`cargo-lambda lambda watch --only-lambda-apis --ignore-changes -A 127.0.0.1 -P PORT`,
    /// run in a temporary directory holding an empty package, since it insists on a manifest).
    /// [`RuntimeApi::invoke`] waits up to 10 minutes (cargo-lambda's own limit).
    pub fn start() -> Result<RuntimeApi> {
        on_free_port(RuntimeApi::start_cargo_lambda_on)
    }

    fn start_cargo_lambda_on(port: u16) -> Result<RuntimeApi> {
        let dir = tempfile::Builder::new().prefix("cargo-lambda-").tempdir()?;
        fs::create_dir(dir.path().join("src"))?;
        fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"runtime-api-only\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )?;
        fs::write(dir.path().join("src/main.rs"), "fn main() {}\n")?;
        let mut command = Command::new("cargo-lambda");
        command
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("CARGO_TARGET_DIR");
        let mut process = ChildProcess::spawn_logged(
            "cargo-lambda",
            command,
            &dir.path().join("cargo-lambda.log"),
        )?;
        // cargo-lambda logs "starting Runtime server" just before it binds, and when the bind
        // fails it logs an ERROR but keeps running. So: wait for the line and a listening port,
        // give a failed bind a moment to show, and treat any ERROR as a failed start.
        let starting = format!("runtime_addr=127.0.0.1:{port}");
        let has_error = |log: &str| log.contains("ERROR") || log.contains("Uncaught error");
        process.wait_until("serve the Runtime API", |p| {
            let log = p.log();
            has_error(&log) || (log.contains(&starting) && port_accepts(port))
        })?;
        std::thread::sleep(Duration::from_millis(100));
        if has_error(&process.log()) {
            return Err(process.failure("failed to serve the Runtime API"));
        }
        Ok(RuntimeApi {
            backend: Backend::CargoLambda {
                process,
                port,
                _dir: dir,
            },
            timeout: Duration::from_secs(600),
        })
    }

    /// Starts the in-process Runtime API server; each event's deadline is `timeout` after the
    /// function picks it up, as the function's configured timeout would make it on AWS.
    pub fn start_builtin(timeout: Duration) -> Result<RuntimeApi> {
        let state = Arc::new(RuntimeState::new(timeout));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request| {
            let state = shared.clone();
            Box::pin(async move { state.handle(request).await })
        });
        let server = InProcessServer::start("runtime-api", handler)?;
        Ok(RuntimeApi {
            backend: Backend::Builtin { server, state },
            timeout,
        })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> String {
        match &self.backend {
            // cargo-lambda serves the Runtime API under /.rt; lambda_runtime keeps a base path.
            Backend::CargoLambda { port, .. } => format!("http://127.0.0.1:{port}/.rt"),
            Backend::Builtin { server, .. } => server.addr.to_string(),
        }
    }

    /// The environment the function process needs: `AWS_LAMBDA_RUNTIME_API` and what
    /// `lambda_runtime::Config::from_env` insists on (`AWS_LAMBDA_FUNCTION_NAME`,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`), plus the log group and
    /// stream names Lambda also sets. Region and credentials come from [`Moto::env`].
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api()),
            ("AWS_LAMBDA_FUNCTION_NAME", Self::FUNCTION_NAME.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", Self::FUNCTION_NAME),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Sends one event and returns the function's response body; a function error becomes an
    /// `Err` carrying the error body. Waits for the function to pick the event up and answer.
    pub async fn invoke(&self, event_json: &str) -> Result<String> {
        match self.invoke_outcome(event_json).await? {
            InvokeOutcome::Response(body) => Ok(body),
            InvokeOutcome::FunctionError(body) => bail!("function error: {body}"),
        }
    }

    /// Like [`RuntimeApi::invoke`], but returns function errors as [`InvokeOutcome::FunctionError`].
    pub async fn invoke_outcome(&self, event_json: &str) -> Result<InvokeOutcome> {
        let wait = self.timeout + Self::INVOKE_GRACE;
        match &self.backend {
            Backend::Builtin { state, .. } => state.invoke(event_json.to_owned(), wait).await,
            Backend::CargoLambda { port, process, .. } => {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(wait)
                    .pool_max_idle_per_host(0)
                    .build()?;
                let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/_/invocations");
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(event_json.to_owned())
                    .send()
                    .await
                    .with_context(|| format!("invoke through cargo-lambda ({url})"))?;
                let status = response.status();
                let body = response.text().await?;
                if status == reqwest::StatusCode::OK {
                    Ok(InvokeOutcome::Response(body))
                } else if is_lambda_error(&body) {
                    Ok(InvokeOutcome::FunctionError(body))
                } else {
                    bail!(
                        "cargo-lambda answered the invoke with HTTP {status}: {body}\nits log:\n{}",
                        tail(&process.log(), 3000)
                    )
                }
            }
        }
    }

    /// Like [`RuntimeApi::invoke_outcome`], but fails as soon as `function` (the process serving
    /// this API) exits, with its output, instead of waiting out the timeout.
    pub async fn invoke_watching(
        &self,
        event_json: &str,
        function: &mut ChildProcess,
    ) -> Result<InvokeOutcome> {
        let invocation = self.invoke_outcome(event_json);
        tokio::pin!(invocation);
        loop {
            tokio::select! {
                outcome = &mut invocation => return outcome,
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if function.try_exit_status()?.is_some() {
                        return Err(function.failure("exited during the invocation"));
                    }
                }
            }
        }
    }

    /// [`RuntimeApi::invoke`] for code without an async runtime (blocks the calling thread).
    pub fn invoke_blocking(&self, event_json: &str) -> Result<String> {
        block_on_thread(self.invoke(event_json))
    }

    /// Bodies of `/runtime/init/error` reports (built-in server only; cargo-lambda logs them).
    pub fn init_errors(&self) -> Vec<String> {
        match &self.backend {
            Backend::Builtin { state, .. } => lock(&state.inner).init_errors.clone(),
            Backend::CargoLambda { .. } => Vec::new(),
        }
    }

    /// What the emulator logged (cargo-lambda only; empty for the built-in server).
    pub fn log(&self) -> String {
        match &self.backend {
            Backend::CargoLambda { process, .. } => process.log(),
            Backend::Builtin { .. } => String::new(),
        }
    }
}

fn is_lambda_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|value| {
            value.get("errorType").is_some() || value.get("errorMessage").is_some()
        })
}

/// State of the built-in Runtime API server.
#[derive(Debug)]
struct RuntimeState {
    timeout: Duration,
    inner: Mutex<RuntimeInner>,
    queued: tokio::sync::Notify,
    counter: AtomicU64,
}

#[derive(Debug, Default)]
struct RuntimeInner {
    /// Events not yet picked up by `/next`: (request id, body).
    queue: VecDeque<(String, String)>,
    /// Invocations waiting for their outcome, by request id.
    waiting: HashMap<String, tokio::sync::oneshot::Sender<InvokeOutcome>>,
    init_errors: Vec<String>,
}

const RUNTIME_PREFIX: &str = "/2018-06-01/runtime/";

impl RuntimeState {
    fn new(timeout: Duration) -> RuntimeState {
        RuntimeState {
            timeout,
            inner: Mutex::new(RuntimeInner::default()),
            queued: tokio::sync::Notify::new(),
            counter: AtomicU64::new(0),
        }
    }

    fn unique(&self) -> u64 {
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        // Not random, but unique within the process and varied enough for ids.
        (nanos as u64).rotate_left(17) ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn request_id(&self) -> String {
        let a = self.unique();
        let b = self.unique();
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    async fn invoke(&self, event: String, wait: Duration) -> Result<InvokeOutcome> {
        let id = self.request_id();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        {
            let mut inner = lock(&self.inner);
            inner.waiting.insert(id.clone(), sender);
            inner.queue.push_back((id.clone(), event));
        }
        self.queued.notify_one();
        match tokio::time::timeout(wait, receiver).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => bail!("the Runtime API server stopped before request {id} was answered"),
            Err(_) => {
                let mut inner = lock(&self.inner);
                inner.waiting.remove(&id);
                let picked_up = !inner.queue.iter().any(|(queued, _)| *queued == id);
                inner.queue.retain(|(queued, _)| *queued != id);
                if picked_up {
                    bail!("the function took request {id} but did not answer within {wait:?}")
                }
                bail!(
                    "no function asked for request {id} within {wait:?}: is it running with \
                     RuntimeApi::env() in its environment?"
                )
            }
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(RUNTIME_PREFIX) else {
            return not_found(&path);
        };
        if method == Method::GET && rest == "invocation/next" {
            return self.next().await;
        }
        if method != Method::POST {
            return not_found(&path);
        }
        let body = match request.into_body().collect().await {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            Err(err) => return respond(StatusCode::BAD_REQUEST, "text/plain", err.to_string()),
        };
        if rest == "init/error" {
            let mut inner = lock(&self.inner);
            inner.init_errors.push(body.clone());
            // As on AWS, a failed init fails the invocations waiting for it.
            let waiting: Vec<_> = inner.waiting.drain().collect();
            inner.queue.clear();
            drop(inner);
            for (_, sender) in waiting {
                let _ = sender.send(InvokeOutcome::FunctionError(body.clone()));
            }
            return accepted();
        }
        let Some(rest) = rest.strip_prefix("invocation/") else {
            return not_found(&path);
        };
        let outcome = if let Some(id) = rest.strip_suffix("/response") {
            (id, InvokeOutcome::Response(body))
        } else if let Some(id) = rest.strip_suffix("/error") {
            (id, InvokeOutcome::FunctionError(body))
        } else {
            return not_found(&path);
        };
        let sender = lock(&self.inner).waiting.remove(outcome.0);
        match sender {
            Some(sender) => {
                let _ = sender.send(outcome.1);
                accepted()
            }
            None => json_response(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({
                    "errorType": "InvalidRequestID",
                    "errorMessage": format!("no pending invocation {}", outcome.0),
                }),
            ),
        }
    }

    /// `GET /next`: long-polls until an event is queued, then hands it out with its headers.
    async fn next(&self) -> Response<Full<Bytes>> {
        loop {
            let queued = self.queued.notified();
            let event = lock(&self.inner).queue.pop_front();
            if let Some((id, body)) = event {
                let deadline = SystemTime::now() + self.timeout;
                let deadline_ms = deadline
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let trace = format!(
                    "Root=1-{epoch:08x}-{:08x}{:016x};Parent={:016x};Sampled=0",
                    self.unique() as u32,
                    self.unique(),
                    self.unique()
                );
                let mut response = respond(StatusCode::OK, "application/json", body);
                let headers = response.headers_mut();
                for (name, value) in [
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        RuntimeApi::FUNCTION_ARN.to_owned(),
                    ),
                    ("lambda-runtime-trace-id", trace),
                ] {
                    if let Ok(value) = value.parse() {
                        headers.insert(name, value);
                    }
                }
                return response;
            }
            queued.await;
        }
    }
}

fn accepted() -> Response<Full<Bytes>> {
    json_response(StatusCode::ACCEPTED, &serde_json::json!({ "status": "OK" }))
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "errorType": "NotFound", "errorMessage": format!("no route {path}") }),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("reqwest client")
    }

    #[tokio::test]
    async fn moto_creates_a_bucket_and_resets() -> Result<()> {
        let started = Instant::now();
        let moto = Moto::start()?;
        eprintln!("moto started in {:?}", started.elapsed());
        let client = client();
        let bucket = format!("{}/services-test-bucket", moto.endpoint());
        let created = client.put(&bucket).send().await?;
        assert_eq!(created.status(), 200, "{}", created.text().await?);
        let listing = client.get(moto.endpoint()).send().await?.text().await?;
        assert!(
            listing.contains("<Name>services-test-bucket</Name>"),
            "{listing}"
        );
        moto.reset()?;
        let gone = client.head(&bucket).send().await?;
        assert_eq!(gone.status(), 404);
        let env: HashMap<_, _> = moto.env().into_iter().collect();
        assert_eq!(env["AWS_ENDPOINT_URL"], moto.endpoint());
        assert_eq!(env["AWS_REGION"], "us-east-1");
        Ok(())
    }

    #[tokio::test]
    async fn postgres_answers_with_password_only() -> Result<()> {
        let started = Instant::now();
        let postgres = Postgres::start()?;
        eprintln!("postgres started in {:?}", started.elapsed());
        let (client, connection) =
            tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT 1::int4 + 1, current_database()", &[])
            .await?;
        assert_eq!(row.get::<_, i32>(0), 2);
        assert_eq!(row.get::<_, String>(1), Postgres::DATABASE);

        let wrong = postgres.url().replace(Postgres::PASSWORD, "wrong");
        assert!(
            tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
                .await
                .is_err()
        );

        let other = postgres.create_database("other_db")?;
        let (client, connection) = tokio_postgres::connect(&other, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let row = client.query_one("SELECT current_database()", &[]).await?;
        assert_eq!(row.get::<_, String>(0), "other_db");
        Ok(())
    }

    #[tokio::test]
    async fn http_server_records_and_scripts_statuses() -> Result<()> {
        let server = HttpServer::start()?;
        server.respond_with(vec![500, 429]);
        let client = client();
        let mut statuses = Vec::new();
        for n in 0..3 {
            let response = client
                .post(format!("{}/hook?n={n}", server.url()))
                .header("x-test", "yes")
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await?;
            statuses.push(response.status().as_u16());
        }
        assert_eq!(statuses, [500, 429, 200]);
        let requests = server.wait_for_requests(3, Duration::from_secs(5))?;
        assert_eq!(requests[2].method, "POST");
        assert_eq!(requests[2].path, "/hook?n=2");
        assert_eq!(requests[2].header("X-Test"), Some("yes"));
        assert_eq!(requests[2].body_json()?, serde_json::json!({ "n": 2 }));
        server.clear_requests();
        assert!(server.requests().is_empty());
        Ok(())
    }

    /// Plays the function's side of the Runtime API once: takes an event, then answers it
    /// (echoing it, or reporting an error when the event has `"fail"`).
    async fn serve_one_event(api_base: String) -> Result<reqwest::header::HeaderMap> {
        let client = client();
        let next = client
            .get(format!("{api_base}/2018-06-01/runtime/invocation/next"))
            .send()
            .await?;
        let headers = next.headers().clone();
        let id = headers["lambda-runtime-aws-request-id"]
            .to_str()?
            .to_owned();
        let event: serde_json::Value = serde_json::from_str(&next.text().await?)?;
        let (kind, body) = if event.get("fail").is_some() {
            (
                "error",
                serde_json::json!({ "errorType": "Boom", "errorMessage": "asked to fail" }),
            )
        } else {
            ("response", serde_json::json!({ "echo": event }))
        };
        let answer = client
            .post(format!(
                "{api_base}/2018-06-01/runtime/invocation/{id}/{kind}"
            ))
            .body(body.to_string())
            .send()
            .await?;
        assert!(answer.status().is_success(), "{}", answer.status());
        Ok(headers)
    }

    async fn exercise(api: &RuntimeApi) -> Result<reqwest::header::HeaderMap> {
        let env: HashMap<_, _> = api.env().into_iter().collect();
        let base = env["AWS_LAMBDA_RUNTIME_API"].clone();
        let base = if base.starts_with("http") {
            base
        } else {
            format!("http://{base}")
        };
        let function = tokio::spawn(serve_one_event(base.clone()));
        let response = api.invoke(r#"{"records":[]}"#).await?;
        let headers = function.await??;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&response)?,
            serde_json::json!({ "echo": { "records": [] } })
        );

        let function = tokio::spawn(serve_one_event(base));
        let outcome = api.invoke_outcome(r#"{"fail":true}"#).await?;
        function.await??;
        match outcome {
            InvokeOutcome::FunctionError(body) => assert!(body.contains("asked to fail"), "{body}"),
            other => panic!("expected a function error, got {other:?}"),
        }
        Ok(headers)
    }

    #[tokio::test]
    async fn builtin_runtime_api_round_trip() -> Result<()> {
        let api = RuntimeApi::start_builtin(Duration::from_secs(30))?;
        let headers = exercise(&api).await?;
        let deadline: u128 = headers["lambda-runtime-deadline-ms"].to_str()?.parse()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        assert!(
            deadline > now + 20_000 && deadline <= now + 30_000,
            "deadline {deadline}, now {now}"
        );
        assert_eq!(
            headers["lambda-runtime-invoked-function-arn"],
            RuntimeApi::FUNCTION_ARN
        );
        assert!(
            headers["lambda-runtime-trace-id"]
                .to_str()?
                .starts_with("Root=1-")
        );
        // Nobody serves this event: the wait ends with a clear error instead of hanging.
        let Backend::Builtin { state, .. } = &api.backend else {
            unreachable!()
        };
        let err = state
            .invoke("{}".to_owned(), Duration::from_millis(200))
            .await
            .expect_err("no function");
        let blocking = err.to_string();
        assert!(blocking.contains("no function asked"), "{blocking}");
        Ok(())
    }

    #[tokio::test]
    async fn invoke_watching_fails_fast_when_the_function_dies() -> Result<()> {
        let api = RuntimeApi::start_builtin(Duration::from_secs(60))?;
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 0.2; echo 'panicked at poison' >&2; exit 101"]);
        let mut function = ChildProcess::spawn("function", command)?;
        let started = Instant::now();
        let err = api
            .invoke_watching("{}", &mut function)
            .await
            .expect_err("the function died");
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = format!("{err:#}");
        assert!(
            text.contains("panicked at poison") && text.contains("101"),
            "{text}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn cargo_lambda_runtime_api_round_trip() -> Result<()> {
        let started = Instant::now();
        let api = RuntimeApi::start()?;
        eprintln!("cargo-lambda started in {:?}", started.elapsed());
        let headers = exercise(&api).await?;
        assert!(headers.contains_key("lambda-runtime-deadline-ms"));
        Ok(())
    }

    #[test]
    fn servers_finding_their_port_taken_are_retried() -> Result<()> {
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = holder.local_addr()?.port();
        let moto = Moto::start_on(port).expect_err("the port is taken");
        assert!(is_addr_in_use(&moto), "{moto:#}");
        let lambda = RuntimeApi::start_cargo_lambda_on(port).expect_err("the port is taken");
        assert!(is_addr_in_use(&lambda), "{lambda:#}");
        let cluster = Cluster::init("test", "pw")?;
        let postgres = cluster.launch(port).expect_err("the port is taken");
        assert!(is_addr_in_use(&postgres), "{postgres:#}");
        Ok(())
    }

    #[test]
    fn free_ports_are_not_handed_out_twice() -> Result<()> {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect::<Result<_>>()?;
        let unique: BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
        Ok(())
    }

    /// How many processes of process group `group` are alive (not zombies), from /proc.
    fn live_members(group: u32) -> usize {
        let group = group.to_string();
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| fs::read_to_string(entry.path().join("stat")).ok())
            .filter(|stat| {
                // After "pid (comm) ": state, ppid, pgrp.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or("", |(_, rest)| rest)
                    .split_whitespace()
                    .collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == group
            })
            .count()
    }

    #[test]
    fn child_process_reports_its_output_and_is_killed_on_drop() -> Result<()> {
        let mut command = Command::new("sh");
        command.args(["-c", "echo hello; sleep 60 & wait"]);
        let mut child = ChildProcess::spawn("sleeper", command)?;
        child.wait_until("greet", |p| p.log().contains("hello"))?;
        let group = child.pid();
        assert!(live_members(group) >= 2, "sh and sleep run");
        drop(child);
        // The whole group is gone, including the backgrounded sleep (zombies aside, which
        // whoever adopted them reaps).
        assert_eq!(live_members(group), 0);

        let mut failing = Command::new("sh");
        failing.args(["-c", "echo 'something broke' >&2; exit 3"]);
        let mut child = ChildProcess::spawn("failing", failing)?;
        let err = child.wait_until("never", |_| false).expect_err("it exits");
        let text = format!("{err:#}");
        assert!(
            text.contains("something broke") && text.contains("exit status: 3"),
            "{text}"
        );
        Ok(())
    }
}
