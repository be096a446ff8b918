//! HTTP/1.1 for the metrics endpoint, without I/O: the bytes a connection
//! has sent in, one answer out.
//!
//! Requests are parsed by `httparse`. `GET /metrics` and `HEAD /metrics`
//! (a query string is ignored) are answered with the exposition; another
//! path gets 404, another method on /metrics 405 with `Allow`. A request
//! head larger than [`MAX_REQUEST`] gets 431, a malformed one 400, and the
//! connection is closed after either. Connections persist as RFC 9112 says
//! (HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with `Connection:
//! keep-alive`). Request bodies are never read: a request that announces
//! one is answered and its connection closed.

use std::time::SystemTime;

use super::text::CONTENT_TYPE;
use crate::metrics::civil_from_days;

/// The largest request head (request line and headers) read, in bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The most header fields a request may have.
pub const MAX_HEADERS: usize = 32;

/// The type of every answer but the exposition.
const PLAIN: &str = "text/plain; charset=utf-8";

/// The one path served.
pub const PATH: &str = "/metrics";

/// What the bytes read so far call for.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// No whole request yet: read more.
    More,
    /// Answer a request made of the first `len` bytes.
    Answer {
        /// Bytes of the request, to drop from the buffer.
        len: usize,
        /// The whole response.
        response: Vec<u8>,
        /// Close the connection once the response is sent.
        close: bool,
    },
}

/// A status line's code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeaderTooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// The response to a client past the connection limit: 503, then close.
pub fn busy() -> Vec<u8> {
    response_bytes(
        "503 Service Unavailable",
        PLAIN,
        b"too many connections\n",
        Persistence::Close,
        &[],
        false,
    )
}

/// What the first request in `buf` calls for; `scrape` makes the
/// exposition, called only for a request that gets it.
pub fn step(buf: &[u8], scrape: impl FnOnce() -> Vec<u8>) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Step::More,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return error(buf.len(), Status::HeaderTooLarge);
        }
        Err(_) => return error(buf.len(), Status::BadRequest),
    };
    if len > MAX_REQUEST {
        return error(len, Status::HeaderTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return error(len, Status::BadRequest);
    };
    let mut hosts = 0;
    let mut body = false;
    let mut conn_close = false;
    let mut conn_keep = false;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(0) => {}
                Some(_) => body = true,
                None => return error(len, Status::BadRequest),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            body = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                conn_close |= token.eq_ignore_ascii_case(b"close");
                conn_keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // RFC 9112, section 3.2: an HTTP/1.1 request has exactly one Host.
    if (version == 1 && hosts != 1) || hosts > 1 {
        return error(len, Status::BadRequest);
    }
    let persist = !body
        && !conn_close
        && match version {
            1 => true,
            _ => conn_keep,
        };
    let persistence = match (persist, version) {
        (false, _) => Persistence::Close,
        (true, 0) => Persistence::KeepAlive,
        (true, _) => Persistence::Default,
    };
    let head_only = method == "HEAD";
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let response = if path != PATH {
        let text = b"not found: the metrics are at /metrics\n";
        response_bytes(
            Status::NotFound.line(),
            PLAIN,
            text,
            persistence,
            &[],
            head_only,
        )
    } else if method == "GET" || head_only {
        let body = scrape();
        response_bytes(
            Status::Ok.line(),
            CONTENT_TYPE,
            &body,
            persistence,
            &[],
            head_only,
        )
    } else {
        let text = b"only GET and HEAD\n";
        let allow = [("Allow", "GET, HEAD")];
        response_bytes(
            Status::MethodNotAllowed.line(),
            PLAIN,
            text,
            persistence,
            &allow,
            false,
        )
    };
    Step::Answer {
        len,
        response,
        close: !persist,
    }
}

/// A request that cannot be answered properly: the error, then close.
fn error(len: usize, status: Status) -> Step {
    let text = match status {
        Status::HeaderTooLarge => "request head too large\n",
        _ => "bad request\n",
    };
    Step::Answer {
        len,
        response: response_bytes(
            status.line(),
            PLAIN,
            text.as_bytes(),
            Persistence::Close,
            &[],
            false,
        ),
        close: true,
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// None: an HTTP/1.1 connection that goes on.
    Default,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
    /// `Connection: close`: the connection ends after this response.
    Close,
}

/// A whole response: status line, Date, Content-Type, Content-Length (of
/// `body` even when it is left out, for HEAD), `extra` headers and the
/// `Connection` header of `persistence`.
fn response_bytes(
    status: &str,
    content_type: &str,
    body: &[u8],
    persistence: Persistence,
    extra: &[(&str, &str)],
    head_only: bool,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nDate: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        http_date(SystemTime::now()),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    match persistence {
        Persistence::Default => {}
        Persistence::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
        Persistence::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// `t` as an HTTP date (RFC 9110, section 5.6.7: IMF-fixdate).
fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &[u8]) -> (usize, String, bool) {
        match step(req, || b"m 1\n".to_vec()) {
            Step::Answer {
                len,
                response,
                close,
            } => (len, String::from_utf8(response).unwrap(), close),
            Step::More => panic!("no answer to {:?}", String::from_utf8_lossy(req)),
        }
    }

    fn status(resp: &str) -> &str {
        resp.lines().next().unwrap()
    }

    #[test]
    fn get_metrics_keeps_the_connection() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET";
        let (len, resp, close) = answer(req);
        assert_eq!(len, req.len() - 3);
        assert!(!close);
        assert_eq!(status(&resp), "HTTP/1.1 200 OK");
        assert!(resp.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")));
        assert!(resp.contains("\r\nContent-Length: 4\r\n"));
        assert!(!resp.contains("Connection:"));
        assert!(resp.ends_with("\r\n\r\nm 1\n"));
    }

    #[test]
    fn a_query_string_is_ignored_and_head_has_no_body() {
        let (_, resp, _) = answer(b"HEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&resp), "HTTP/1.1 200 OK");
        assert!(resp.contains("\r\nContent-Length: 4\r\n"));
        assert!(resp.ends_with("\r\n\r\n"));
    }

    #[test]
    fn connection_close_and_http_1_0() {
        let (_, resp, close) =
            answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: TE, close\r\n\r\n");
        assert!(close);
        assert!(resp.contains("\r\nConnection: close\r\n"));
        let (_, resp, close) = answer(b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(close);
        assert!(resp.contains("\r\nConnection: close\r\n"));
        let (_, resp, close) = answer(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!close);
        assert!(
            resp.contains("\r\nConnection: keep-alive\r\n\r\nm 1\n"),
            "{resp}"
        );
    }

    #[test]
    fn other_paths_and_methods() {
        let (_, resp, close) = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&resp), "HTTP/1.1 404 Not Found");
        assert!(!close);
        let (_, resp, close) =
            answer(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status(&resp), "HTTP/1.1 405 Method Not Allowed");
        assert!(resp.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(!close);
        // A body is never read: answered, then the connection closes.
        let put = b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let (len, resp, close) = answer(put);
        assert_eq!(status(&resp), "HTTP/1.1 405 Method Not Allowed");
        assert!(close && resp.contains("\r\nConnection: close\r\n"));
        assert_eq!(len, put.len() - b"hello".len());
        let (_, _, close) =
            answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(close);
    }

    #[test]
    fn partial_then_too_large() {
        assert_eq!(
            step(b"GET /metrics HTTP/1.1\r\nHost:", Vec::new),
            Step::More
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST, b'a');
        let (_, resp, close) = answer(&big);
        assert_eq!(
            status(&resp),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        assert!(close);
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            status(&answer(&many).1),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn malformed_requests_get_400_and_close() {
        for bad in [
            &b"GET /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
            b"GET /metrics FTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let (_, resp, close) = answer(bad);
            assert_eq!(status(&resp), "HTTP/1.1 400 Bad Request", "{bad:?}");
            assert!(close, "{bad:?}");
        }
    }

    #[test]
    fn the_scrape_runs_only_for_metrics() {
        let mut ran = false;
        let _ = step(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", || {
            ran = true;
            Vec::new()
        });
        assert!(!ran);
    }

    /// Every proper prefix of a request asks for more; none of 100,000
    /// mutated requests panics, and each is answered or waits.
    #[test]
    fn prefixes_wait_and_mutations_never_panic() {
        let req = b"GET /metrics?a=b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
        for n in 0..req.len() {
            assert_eq!(step(&req[..n], Vec::new), Step::More, "{n}");
        }
        assert!(matches!(step(req, Vec::new), Step::Answer { .. }));
        // xorshift64*: the same inputs on every run.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for _ in 0..100_000 {
            let mut m = req.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => m.insert(at, next() as u8),
                    _ => {
                        m.remove(at);
                    }
                }
            }
            if let Step::Answer { len, response, .. } = step(&m, Vec::new) {
                assert!(len <= m.len());
                assert!(response.starts_with(b"HTTP/1.1 "));
            }
        }
    }

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_709_210_096);
        assert_eq!(http_date(t), "Thu, 29 Feb 2024 12:34:56 GMT");
    }
}
