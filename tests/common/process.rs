//! The real binary as a child process: started with a config, ready when its admin `/healthz`
//! answers, killed and reaped however the test ends; its log, CPU time, memory, open descriptors
//! and `/metrics` at hand; raw HTTP/1.1 exchanges with it over plain sockets.

use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shadowdiff");

/// A running `shadowdiff`.
pub struct Process {
    child: Option<Child>,
    pid: u32,
    pub admin: SocketAddr,
    /// The admin token (`admin.token_file`), sent with the requests this helper makes.
    pub token: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Process {
    /// Starts `cmd` (the binary, or a wrapper such as `prlimit` that execs it) in `dir`, its
    /// stderr collected (`RUST_LOG=info` unless `cmd` sets it), and waits until `/healthz`
    /// answers on `admin`.
    pub fn start(mut cmd: Command, dir: &Path, admin: SocketAddr) -> Process {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut l = sink.lock();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let pid = child.id();
        let mut p = Process {
            child: Some(child),
            pid,
            admin,
            token: None,
            log,
        };
        p.poll(Duration::from_secs(30), "/healthz to answer", |p| {
            if let Some(s) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("shadowdiff exited ({s}) before serving:\n{}", p.log());
            }
            http_get(admin, "/healthz").filter(|a| a.status == 200)
        });
        p
    }

    /// Calls `f` every 20 ms until it gives a value; fails the test after `within`.
    fn poll<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with `kill`.
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .args([format!("-{name}"), self.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -{name} {}", self.pid);
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits for it to exit; fails the test after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let s = self.poll(within, "exit", |p| {
            p.child.as_mut().unwrap().try_wait().unwrap()
        });
        self.child = None;
        s
    }

    /// CPU time used so far (user + system), in clock ticks (1/100 s on Linux).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Descriptors open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .count()
    }

    /// One sample of `/metrics`: the value of `name` with exactly these labels (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = http_get_as(self.admin, "/metrics", self.token.as_deref())
            .unwrap()
            .body;
        metric_value(&text, name, labels)
    }
}

/// The value of one sample in a Prometheus text page (0 when absent).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want = if labels.is_empty() {
        name.to_string()
    } else {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", l.join(","))
    };
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == want).then(|| v.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// An answer read off a raw socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET path` on a fresh connection (`Connection: close`); `None` when the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<Answer> {
    http_get_as(addr, path, None)
}

/// [`http_get`] with the admin token, when there is one.
pub fn http_get_as(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<Answer> {
    http_request(addr, "GET", path, token, None)
}

/// One request on a fresh connection (`Connection: close`), with the admin token when there is
/// one and a JSON body when given; `None` when the connection fails.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        })
        .unwrap_or_else(|| "\r\n".into());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n{body}"
    )
    .ok()?;
    read_answer(&mut s)
}

/// Reads one whole answer to a `Connection: close` request (the body runs to the end).
pub fn read_answer(s: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some(Answer { status, body })
}
