//! loadgen: the SOCKS5 load generator behind `make bench`.
//!
//! One process per measured run: it starts its own loopback targets, drives
//! one scenario through a SOCKS5 proxy (or straight to the target, the
//! "direct" baseline) and prints one line `loadgen key=value ...`.
//! `loadgen compare` is the driver: it starts every peer proxy, alternates
//! them, repeats, and writes the report.
//!
//! ```text
//!   client.rs        SOCKS5 client: greeting, RFC 1929 log-in, CONNECT,
//!                    UDP ASSOCIATE and the UDP request header
//!   targets.rs       echo server (mio), sink/source and UDP echo (threads)
//!   mmsg.rs          batches of datagrams: sendmmsg, recvmmsg
//!   scenarios/       throughput, handshake, latency, idle, churn, udp, rate:
//!                    one line each
//!   procfs.rs        a proxy's process tree, RSS/PSS and CPU time
//!   ports.rs         listening ports below the ephemeral range
//!   line.rs          the result line;  stats.rs: percentiles, medians
//!   driver/          `compare`: the peers, the rounds, the raw lines
//!   report.rs        the Markdown report;  svg.rs: its bar charts
//!   scale/           `scale`: 100,000 tunnels in User-Mode Linux, its
//!                    report;  plot.rs: its line chart
//! ```
//!
//! It only ever connects to loopback addresses, and every loop in it is
//! bounded in count or time.

// `unsafe` in two modules only: driver/spawn.rs (a child's signal mask) and
// mmsg.rs (the sendmmsg and recvmmsg calls).
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// Under `cargo test` the libtest harness stands in for `main`, so whatever
// only `main` reaches looks unused there.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod client;
mod driver;
mod line;
mod mmsg;
mod plot;
mod ports;
mod procfs;
mod report;
mod scale;
mod scenarios;
mod stats;
mod svg;
mod targets;

use std::process::ExitCode;

use args::Args;
use scenarios::{Common, churn, handshake, idle, latency, rate, throughput, udp};

const USAGE: &str = "\
Usage: loadgen SCENARIO [OPTION]...     one measured run, one result line
       loadgen compare [OPTION]...      the whole comparison (make bench)
       loadgen report --dir DIR         the report again from DIR/raw.txt
       loadgen scale [OPTION]...        100,000 tunnels in UML (make bench-scale)

Scenarios (defaults in brackets):
  throughput  --tunnels N [1] --bytes SIZE [2G, in all] --dir up|down [up]
  handshake   --threads K [8] --secs T [5] --warmup S [0.5]
  latency     --rounds N [20000] --warmup N [2000] --size BYTES [64]
  idle        --tunnels C [9000] --settle S [1] --openers N [8]
  churn       --cycles N [1000000] --warmup N [200000] --threads K [8] (with --pid)
  udp         --assocs N [1] --size BYTES [1400] --window N [64] --secs T [1]
              --warmup S [0.2] --loss-ms MS [200]
  rate        --tunnels N [1] --secs T [5] --limit BYTES_PER_S [none]
              --baseline IP:PORT [none] --baseline-pid PID --pairs N [4]
Every scenario:
  --proxy IP:PORT   a loopback SOCKS5 proxy (none: straight to the target)
  --auth USER:PASS  log in with RFC 1929 (none: method X'00')
  --pid PID         the proxy's pid: its memory and CPU use are reported
  --peer NAME --case NAME --round N   labels for the report
  --timeout S       bound on every connect, read and write [10]

compare:
  --mode full|quick [full]  --rounds N [5 full, 1 quick]
  --budget S        start no round that would end past S seconds [720 full, 90 quick]
  --peers LIST [direct,socks5d,socks5d-rules1000,socks5d-proxyproto,socks5d-redis,microsocks,
                dante,dante-noauth]
                    (socks5d-rules1000: socks5d judging 1,000 rules; socks5d-proxyproto:
                    behind a balancer; socks5d-redis: its users in a redis-server of the
                    run's own; all three in the handshake case only)
  --cases LIST      only these cases, by case or scenario name (udp, t1-up, ...)
  --out DIR [bench-results/MODE]  --socks5d PATH [target/release/socks5d]
  --strict          fail unless every run of every peer gave its number (and no peer
                    or case was left out)

scale (in a User-Mode Linux guest it boots; report in --out):
  --steps LIST [10000,25000,50000,100000]  --out DIR [bench-results/scale]
  --mem SIZE [4G] (the guest's)  --uml-timeout S [3600]  --thash-entries N [524288]
  --sources N [4]  --targets N [8]  --openers N [8]  --active N [4]
  --echo-rounds N [2000]  --echo-warmup N [200]  --hs-threads K [8]
  --hs-rounds N [5]  --hs-secs T [1]  --hs-warmup S [0.3]  --settle S [1]
  --sample N [1000]
  --timeout S [30]  --socks5d PATH [target/release/socks5d]
  --report          only the report again, from OUT/raw.txt";

fn run_scenario(name: &str, mut a: Args) -> Result<bool, String> {
    let common = Common::from_args(&mut a, name)?;
    scenarios::raise_nofile();
    let line = match name {
        "throughput" => {
            let p = throughput::Params {
                tunnels: a.get("--tunnels", 1)?,
                bytes: a.size("--bytes", 2 << 30)?,
                dir: match a.get("--dir", "up".to_owned())?.as_str() {
                    "up" => throughput::Dir::Up,
                    "down" => throughput::Dir::Down,
                    d => return Err(format!("--dir: '{d}' is neither up nor down")),
                },
            };
            a.finish()?;
            throughput::run(&common, &p)
        }
        "handshake" => {
            let p = handshake::Params {
                threads: a.get("--threads", 8)?,
                secs: a.get("--secs", 5.0)?,
                warmup: a.get("--warmup", 0.5)?,
            };
            a.finish()?;
            handshake::run(&common, &p)
        }
        "latency" => {
            let p = latency::Params {
                rounds: a.get("--rounds", 20_000)?,
                warmup: a.get("--warmup", 2_000)?,
                size: usize::try_from(a.size("--size", 64)?).map_err(|e| e.to_string())?,
            };
            a.finish()?;
            latency::run(&common, &p)
        }
        "idle" => {
            let p = idle::Params {
                tunnels: a.get("--tunnels", 9_000)?,
                settle: a.get("--settle", 1.0)?,
                openers: a.get("--openers", 8)?,
            };
            a.finish()?;
            idle::run(&common, &p)
        }
        "churn" => {
            let p = churn::Params {
                cycles: a.get("--cycles", 1_000_000)?,
                warmup: a.get("--warmup", 200_000)?,
                threads: a.get("--threads", 8)?,
            };
            a.finish()?;
            churn::run(&common, &p)
        }
        "udp" => {
            let p = udp::Params {
                assocs: a.get("--assocs", 1)?,
                size: usize::try_from(a.size("--size", 1400)?).map_err(|e| e.to_string())?,
                window: a.get("--window", 64)?,
                secs: a.get("--secs", 1.0)?,
                warmup: a.get("--warmup", 0.2)?,
                loss_ms: a.get("--loss-ms", 200)?,
            };
            a.finish()?;
            p.check()?;
            udp::run(&common, &p)
        }
        "rate" => {
            let p = rate::Params {
                tunnels: a.get("--tunnels", 1)?,
                secs: a.get("--secs", 5.0)?,
                limit: match a.value("--limit")? {
                    None => None,
                    Some(v) => Some(
                        args::parse_size(&v)
                            .ok_or_else(|| format!("--limit: '{v}' is not a size"))?,
                    ),
                },
                baseline: scenarios::loopback_arg(&mut a, "--baseline")?,
                baseline_pid: a
                    .value("--baseline-pid")?
                    .map(|v| v.parse())
                    .transpose()
                    .map_err(|e: std::num::ParseIntError| format!("--baseline-pid: {e}"))?,
                pairs: a.get("--pairs", 4)?,
            };
            a.finish()?;
            if !(p.secs > 0.0 && p.secs.is_finite()) {
                return Err("--secs: more than 0".into());
            }
            rate::run(&common, &p)
        }
        _ => unreachable!("only scenario names come here"),
    };
    println!("{line}");
    Ok(line.get("ok") == Some("1"))
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let a = Args::new(argv);
    let result = match cmd.as_str() {
        "throughput" | "handshake" | "latency" | "idle" | "churn" | "udp" | "rate" => {
            run_scenario(&cmd, a)
        }
        "compare" => driver::main(a),
        "scale" => scale::main(a),
        "report" => report::main(a),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command '{other}' (try --help)")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
