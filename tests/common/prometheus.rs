//! A real Prometheus server (Debian's `prometheus`) scraping socks5d
//! instances, and its HTTP API's instant queries.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{HttpConn, temp_path};

/// A Prometheus server started for the test, killed and its folder removed
/// when dropped.
pub struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    web: SocketAddr,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (job `socks5d`) every second,
    /// evaluating `rule_files` every second, and waits until its /-/ready
    /// answers 200.
    pub fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> PrometheusServer {
        let dir = temp_path("prometheus");
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules: String = rule_files
            .iter()
            .map(|r| format!("  - '{}'\n", r.display()))
            .collect();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n{rules}\
                 scrape_configs:\n  - job_name: socks5d\n    static_configs:\n\
                 \x20     - targets: [{}]\n",
                targets.join(", ")
            )
            .replace("rule_files:\nscrape_configs", "scrape_configs"),
        )
        .unwrap();
        // A free loopback port for its web interface.
        let web = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run prometheus (Debian's prometheus; make test installs it)");
        let mut p = PrometheusServer { child, dir, web };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}):\n{}", p.log());
            }
            let ready = HttpConn::connect(web)
                .and_then(|mut c| c.request("GET", "/-/ready"))
                .is_ok_and(|r| r.status == 200);
            if ready {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 60 s:\n{}",
                p.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` on its HTTP API: the JSON text.
    pub fn get(&self, path: &str) -> String {
        let mut c = HttpConn::connect(self.web).expect("connect to prometheus");
        let r = c.request("GET", path).expect("prometheus answers");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.text()
    }

    /// The values of an instant query's results, as Prometheus writes them.
    pub fn query(&self, promql: &str) -> Vec<String> {
        let json = self.get(&format!("/api/v1/query?query={}", percent_encode(promql)));
        assert!(json.contains("\"status\":\"success\""), "{promql}: {json}");
        // Each result ends with "value":[TIME,"VALUE"].
        json.split("\"value\":[")
            .skip(1)
            .map(|r| {
                let v = r.split_once(",\"").expect("a value").1;
                v[..v.find('"').expect("a closing quote")].to_owned()
            })
            .collect()
    }

    /// Polls `want` (query, the values it should answer) until Prometheus
    /// answers exactly that, failing after `within` with what it answered.
    pub fn wait_for(&self, want: &[(&str, &[&str])], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got: Vec<Vec<String>> = want.iter().map(|(q, _)| self.query(q)).collect();
            if want.iter().zip(&got).all(|((_, w), g)| g == w) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus's answers {got:?}, wanted {want:?}; targets: {}\nlog:\n{}",
                self.get("/api/v1/targets"),
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `s` with everything but unreserved characters percent-encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}
