//! Helpers for the `rkl serve` tests: a server process on the simulator and
//! a small HTTP/1.1 client (Connection: close, chunked bodies decoded).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// target/debug (the test executable is target/debug/deps/x).
pub fn target_debug() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(2).unwrap().to_path_buf()
}

/// The simulator (`cargo build -p rkllm-sim`, which `make cli-check` does).
pub fn sim() -> PathBuf {
    let lib = target_debug().join("librkllmrt.so");
    assert!(lib.exists(), "{} is missing: run `cargo build -p rkllm-sim` (make cli-check does)", lib.display());
    assert!(
        target_debug().join("rkl-host").exists(),
        "target/debug/rkl-host is missing: run `cargo build -p rkl --bin rkl-host` (make cli-check does)"
    );
    lib
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = target_debug().join("cli-test-tmp").join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A simulator model file in `dir`.
pub fn model(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.sim"));
    let mut text = format!("RKLLM-SIM 1\nname = {name}\n");
    if !lines.iter().any(|l| l.starts_with("time_scale")) {
        text.push_str("time_scale = 0\n");
    }
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl Server {
    /// Starts `rkl serve ARGS` on a free port, with the simulator as the
    /// runtime; `env` adds variables.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkl"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(dir.join("cache"))
            .args(args)
            .env("RKL_RUNTIME", sim())
            .env("RKLLM_SIM_TIME_SCALE", "0")
            .env_remove("RKL_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start rkl serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("rkl serve: listening on http://") {
                addr = Some(a.to_string());
                break;
            }
        }
        let addr = addr.expect("rkl serve did not say where it listens");
        // Keep draining its stdout (the runtime prints to it).
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr, dir: dir.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Response {
        request(&self.addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    pub fn metric(&self, name_and_labels: &str) -> f64 {
        let text = self.get("/metrics").body_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name_and_labels} in:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of an event stream, in order.
    pub fn events(&self) -> Vec<String> {
        self.body_text().split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(String::from).collect()
    }

    /// The text of a streamed reply, the finish reason, whether [DONE] came,
    /// and the error event if any.
    pub fn stream_reply(&self) -> (String, Option<String>, bool, Option<serde_json::Value>) {
        let mut text = String::new();
        let (mut finish, mut done, mut error) = (None, false, None);
        for e in self.events() {
            if e == "[DONE]" {
                done = true;
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&e).unwrap();
            if v.get("error").is_some() {
                error = Some(v);
                continue;
            }
            let Some(c) = v["choices"].get(0) else { continue };
            if let Some(t) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        (text, finish, done, error)
    }
}

/// One request on a fresh connection.
pub fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    s.write_all(&all).unwrap();
    read_response(&mut BufReader::new(s))
}

pub fn read_response(r: &mut impl BufRead) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap_or_else(|| panic!("bad status line {line:?}")).parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Response { status, headers, body: Vec::new() };
    if resp.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            if n == 0 {
                line.clear();
                r.read_line(&mut line).unwrap();
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            resp.body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = resp.header("content-length").map(|l| l.parse::<usize>().unwrap()) {
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body).unwrap();
    } else {
        r.read_to_end(&mut resp.body).unwrap();
    }
    resp
}

pub fn chat(model: &str, user: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({ "model": model, "stream": stream, "messages": [{ "role": "user", "content": user }] })
}
