//! Running the planted world: its upstreams (HTTP/1.1 written by hand, so one can answer what no
//! library would), its requests through a proxy, and the real binary in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{
    CHUNK_EMAIL, CHUNK_TOKEN, CONFIG, answer, answer_headers, exchanges, path_of, requests,
};
use crate::common::{Proc, free_port, http_get};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// A config for this world: upstreams started on 127.0.0.1 (a secondary too when asked),
/// `sinks` the YAML lines under `sinks:` (indented), then [`CONFIG`].
pub fn config_text(listen: &str, admin: &str, sinks: &str, secondary: bool) -> String {
    let (p, c) = (upstream(true), upstream(false));
    let secondary = if secondary {
        format!("secondary: http://{}\n", upstream(true))
    } else {
        String::new()
    };
    format!(
        "listen: {listen}\nadmin: {admin}\nprimary: http://{p}\ncandidate: http://{c}\n\
         {secondary}sinks:\n{sinks}{CONFIG}"
    )
}

/// The real binary, `shadowdiff proxy`, in front of this world.
pub struct RealProxy {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl RealProxy {
    /// Writes [`config_text`] to `dir` and starts the proxy there with `env`; ready when
    /// `/readyz` answers.
    pub fn start(dir: &Path, sinks: &str, secondary: bool, env: &[(&str, &str)]) -> RealProxy {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = dir.join("shadowdiff.yaml");
        let text = config_text(&listen.to_string(), &admin.to_string(), sinks, secondary);
        std::fs::write(&cfg, text).unwrap();
        let mut proc = Proc::spawn(
            "proxy",
            dir,
            &["proxy", "--config", cfg.to_str().unwrap()],
            env,
        );
        proc.wait_http_ok(admin, "/readyz");
        RealProxy {
            proc,
            listen,
            admin,
        }
    }

    /// Sends [`requests`] and waits until the summary has counted every exchange.
    pub fn drive_and_wait(&self) {
        drive(self.listen);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = http_get(self.admin, "/api/v1/summary?window=all&top=1") {
                let v: Value = serde_json::from_slice(&body).unwrap();
                if v["totals"]["exchanges"].as_u64() >= Some(exchanges()) {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not every exchange compared in 30 s\n{}",
                self.proc.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An upstream of this world on 127.0.0.1 (primary or secondary when `primary`, else the
/// candidate), HTTP/1.1 with keep-alive, one thread per connection for the test's life.
pub fn upstream(primary: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || serve(primary, s));
        }
    });
    addr
}

fn serve(primary: bool, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let (target, body_len, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (req.path.unwrap_or("/").to_string(), len, n);
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_len + body_len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_len + body_len);
        let path = path_of(&target);
        let bad_chunk = match path.as_str() {
            "/chunk" => Some(format!("zz {CHUNK_EMAIL}")),
            "/chunk-token" => Some(format!(r#"{{"token": "{CHUNK_TOKEN}"}}"#)),
            _ => None,
        };
        if let Some(line) = bad_chunk.filter(|_| !primary) {
            // Not a chunk size: the shadow client gives up and quotes the line in its error.
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\nconnection: close\r\n\r\n{line}\r\n{{}}\r\n0\r\n\r\n"
            );
            return;
        }
        let (ct, body) = answer(primary, &path);
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (name, value) in answer_headers(primary) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if s.write_all(head.as_bytes()).is_err() || s.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

/// Sends every request of [`requests`] through the proxy at `proxy`, each on its own
/// connection, and checks the client got the primary's answer.
pub fn drive(proxy: SocketAddr) {
    for (method, target, headers, body) in requests() {
        let mut s = TcpStream::connect(proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {proxy}\r\n");
        for h in &headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{method} {target}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
}
