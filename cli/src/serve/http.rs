//! The part of HTTP/1.1 `rkl serve` speaks, on std::net: requests with a
//! `Content-Length` body (no chunked uploads), answers with a fixed body or
//! chunked (the event streams), keep-alive. Heads are bounded (16 KiB) and
//! bodies by the configuration, before a byte of them is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// The most bytes of a request line plus headers.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// HTTP/1.0 or `Connection: close`: close after the answer.
    pub close: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
pub enum ReadError {
    /// The peer closed (or went idle past the timeout) between requests.
    Closed,
    /// A malformed request: answer this status and message, then close.
    Reject(u16, String),
}

fn reject(status: u16, msg: impl Into<String>) -> ReadError {
    ReadError::Reject(status, msg.into())
}

/// Reads one request. `max_body` bounds the body: a larger one is refused
/// (413) without being read; `Expect: 100-continue` is answered first.
pub fn read_request(reader: &mut BufReader<TcpStream>, max_body: usize) -> Result<Request, ReadError> {
    let mut head = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = Vec::new();
        let limit = (MAX_HEAD_BYTES + 2 - head.len().min(MAX_HEAD_BYTES)) as u64;
        let n = match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(_) if lines.is_empty() => return Err(ReadError::Closed),
            Err(e) => return Err(reject(400, format!("could not read the request head: {e}"))),
        };
        if n == 0 {
            if lines.is_empty() && head.is_empty() {
                return Err(ReadError::Closed);
            }
            return Err(reject(400, "the connection closed in the middle of the request head"));
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD_BYTES {
            return Err(reject(431, format!("request head larger than {MAX_HEAD_BYTES} bytes")));
        }
        if !line.ends_with(b"\n") {
            return Err(reject(431, format!("request head larger than {MAX_HEAD_BYTES} bytes")));
        }
        let text = String::from_utf8(line).map_err(|_| reject(400, "request head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // blank lines before a request are allowed
            }
            break;
        }
        lines.push(text);
    }
    let mut first = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) = (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(reject(400, format!("malformed request line '{}'", lines[0])));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(reject(505, format!("HTTP version '{version}' is not supported (HTTP/1.1 is)")));
    }
    let mut headers = Vec::new();
    for l in &lines[1..] {
        let Some((name, value)) = l.split_once(':') else {
            return Err(reject(400, format!("malformed header line '{l}'")));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut req = Request { method: method.to_string(), path, headers, body: Vec::new(), close: version == "HTTP/1.0" };
    if let Some(c) = req.header("connection") {
        if c.eq_ignore_ascii_case("close") {
            req.close = true;
        } else if c.eq_ignore_ascii_case("keep-alive") {
            req.close = false;
        }
    }
    if req.header("transfer-encoding").is_some() {
        return Err(reject(411, "chunked request bodies are not supported: send the body with a Content-Length"));
    }
    let length = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| reject(400, format!("Content-Length '{v}' is not a number")))?,
    };
    if length > max_body {
        return Err(reject(
            413,
            format!("request body of {length} bytes is larger than the limit of {max_body} bytes"),
        ));
    }
    if length > 0 {
        if req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            let _ = reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        req.body = vec![0; length];
        reader.read_exact(&mut req.body).map_err(|e| reject(400, format!("the request body ended early: {e}")))?;
    }
    Ok(req)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes a whole answer.
pub fn respond(
    out: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
    extra: &[(&str, String)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (n, v) in extra {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(if close { "Connection: close\r\n\r\n" } else { "Connection: keep-alive\r\n\r\n" });
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    out.write_all(&all)?;
    out.flush()
}

/// Starts a chunked answer (an event stream).
pub fn start_chunked(out: &mut TcpStream, content_type: &str, close: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {}\r\n\r\n",
        if close { "close" } else { "keep-alive" }
    );
    out.write_all(head.as_bytes())?;
    out.flush()
}

/// One chunk of a chunked answer.
pub fn write_chunk(out: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut all = format!("{:x}\r\n", data.len()).into_bytes();
    all.extend_from_slice(data);
    all.extend_from_slice(b"\r\n");
    out.write_all(&all)?;
    out.flush()
}

/// Ends a chunked answer.
pub fn finish_chunked(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

/// Whether the peer has closed its side (or the socket failed), without
/// blocking and without consuming anything.
pub fn peer_gone(socket: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: recv on our own open socket into a one-byte buffer that lives
    // across the call; MSG_PEEK leaves the data where it is.
    let n = unsafe {
        libc::recv(socket.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    if n == 0 {
        return true;
    }
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted);
    }
    false
}
