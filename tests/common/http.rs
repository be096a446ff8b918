//! socks5d's Prometheus endpoint from the outside: a small HTTP/1.1 client
//! of its own (one connection, requests in turn, responses read by their
//! Content-Length), the endpoint's address from socks5d's log, the samples
//! of an exposition, and `promtool check metrics`; and the other side of
//! HTTP: a tiny server for targets, and curl as the client through socks5d.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use super::daemon::Daemon;
use super::socks::IO_TIMEOUT;

/// The phrase socks5d logs with the endpoint's address.
const METRICS_READY: &str = "metrics listening: addr=";

/// The endpoint's address from socks5d's "metrics listening: addr=ADDR"
/// line, logged before it listens for SOCKS.
pub fn metrics_addr(d: &Daemon) -> SocketAddr {
    let line = d.stderr_line(METRICS_READY, Duration::from_secs(5));
    let rest = &line[line.find(METRICS_READY).expect("the phrase") + METRICS_READY.len()..];
    rest.split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("the endpoint's address in {line:?}: {e}"))
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (none for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// A client connection to an HTTP server.
#[derive(Debug)]
pub struct HttpConn {
    reader: BufReader<TcpStream>,
}

impl HttpConn {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(HttpConn {
            reader: BufReader::new(s),
        })
    }

    /// The socket, to write raw bytes or shut it down.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    /// Sends `raw` as it is.
    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream().write_all(raw)
    }

    /// `METHOD PATH` with Host, then its response.
    pub fn request(&mut self, method: &str, path: &str) -> io::Result<Response> {
        self.send(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())?;
        self.read_response(method == "HEAD")
    }

    /// Reads one response; `head_only`: a response to HEAD, with no body.
    pub fn read_response(&mut self, head_only: bool) -> io::Result<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("header {l:?}")))?;
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            return Ok(r);
        }
        if r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            r.body = self.read_chunks()?;
            return Ok(r);
        }
        let len: usize = r
            .header("content-length")
            .ok_or_else(|| io::Error::other("no Content-Length"))?
            .parse()
            .map_err(io::Error::other)?;
        r.body = vec![0; len];
        self.reader.read_exact(&mut r.body)?;
        Ok(r)
    }

    /// A chunked body (RFC 9112, section 7.1), without trailers.
    fn read_chunks(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|e| io::Error::other(format!("chunk size {line:?}: {e}")))?;
            if size == 0 {
                line.clear();
                self.reader.read_line(&mut line)?;
                return Ok(body);
            }
            let at = body.len();
            body.resize(at + size, 0);
            self.reader.read_exact(&mut body[at..])?;
            let mut crlf = [0u8; 2];
            self.reader.read_exact(&mut crlf)?;
        }
    }

    /// Whether the server closed the connection: reads until the end,
    /// failing on data or a timeout.
    pub fn expect_closed(&mut self) -> io::Result<()> {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) if rest.is_empty() => Ok(()),
            Ok(_) => Err(io::Error::other(format!(
                "{} more bytes before the end: {:?}",
                rest.len(),
                String::from_utf8_lossy(&rest)
            ))),
            // A reset ends the connection too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `GET /metrics` on a new connection.
pub fn scrape(addr: SocketAddr) -> Response {
    let mut c = HttpConn::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let r = c
        .request("GET", "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics from {addr}: {e}"));
    assert_eq!(r.status, 200, "GET /metrics: {r:?}");
    r
}

/// The samples of an exposition: `name{labels}` as written, to its value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("value of {l:?}: {e}")),
            };
            (series.to_owned(), v)
        })
        .collect()
}

/// `promtool check metrics` on `exposition`: what it said (nothing when
/// clean), or a panic if it failed.
pub fn promtool_check(exposition: &[u8]) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian's prometheus; make test installs it)");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(exposition)
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "promtool check metrics: {:?}\n{said}",
        out.status
    );
    said
}

/// Where the tests' curl is: Debian's.
pub const CURL: &str = "/usr/bin/curl";

/// A tiny HTTP/1.1 server on `bind` (port 0) as a target: GET PATH is
/// answered 200 with `body(PATH)`, or 404 when that is `None`; one request
/// per connection, a thread per connection. Runs until the test ends.
pub fn http_server(bind: &str, body: fn(&str) -> Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    let addr = listener.local_addr().expect("local_addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || serve(conn, body));
        }
    });
    addr
}

/// The response head [`http_server`] sends before a body of `len` bytes.
pub fn response_head(status: &str, len: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

fn serve(mut conn: TcpStream, body: fn(&str) -> Option<&'static [u8]>) {
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let mut reader = BufReader::new(&conn);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Headers end with an empty line; none of them matter here.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body): (&str, &[u8]) = match body(path) {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b""),
    };
    let head = response_head(status, body.len());
    if conn.write_all(head.as_bytes()).is_ok() && conn.write_all(body).is_ok() {
        let _ = conn.shutdown(Shutdown::Write);
    }
}

/// Runs curl with `args`, ignoring any curlrc and proxy environment (a
/// NO_PROXY=127.0.0.1 would make curl bypass socks5d and the test pass for
/// nothing).
pub fn curl(args: &[&str]) -> Output {
    assert!(
        Path::new(CURL).exists(),
        "{CURL} not found: these tests need a real curl; apt-get install curl \
         (make test installs it)"
    );
    let mut cmd = Command::new(CURL);
    cmd.arg("-q")
        .args(["--silent", "--show-error", "--max-time", "120"])
        .args(args);
    super::scrub_env(&mut cmd);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {CURL}: {e}"))
}
