//! Reaching for ambient authority through WASI: files, environment, arguments, sockets and
//! name lookup. Each function tries several ways and reports what happened: `Err("denied:
//! …")` when every attempt failed (the sandbox held), `Ok("REACHED …")` when any succeeded.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

/// What the attempts of one attack saw.
#[derive(Default)]
struct Probes {
    lines: Vec<String>,
    reached: bool,
}

impl Probes {
    /// Records one attempt; `Ok` carries what it saw.
    fn attempt<T: std::fmt::Display>(&mut self, what: &str, result: std::io::Result<T>) {
        match result {
            Ok(seen) => {
                self.reached = true;
                self.lines.push(format!("{what}: REACHED {seen}"));
            }
            Err(e) => self.lines.push(format!("{what}: failed ({e})")),
        }
    }

    fn verdict(self) -> Result<String, String> {
        let report = self.lines.join("; ");
        if self.reached {
            Ok(report)
        } else {
            Err(format!("denied: {report}"))
        }
    }
}

pub fn files(paths: &[String]) -> Result<String, String> {
    let mut probes = Probes::default();
    for path in paths {
        probes.attempt(&format!("read {path}"), fs::read_to_string(path));
    }
    for dir in ["/", "."] {
        let listing = fs::read_dir(dir).map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        probes.attempt(&format!("list {dir}"), listing);
    }
    let created = fs::File::create("wasmtx-escape.txt")
        .and_then(|mut f| f.write_all(b"escaped"))
        .map(|()| "a file");
    probes.attempt("create wasmtx-escape.txt", created);
    probes.verdict()
}

pub fn env() -> Result<String, String> {
    let mut probes = Probes::default();
    let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    probes.attempt("environment", not_empty(vars));
    probes.verdict()
}

pub fn args() -> Result<String, String> {
    let mut probes = Probes::default();
    probes.attempt("arguments", not_empty(std::env::args().collect()));
    probes.verdict()
}

pub fn sockets(addr: &str) -> Result<String, String> {
    let mut probes = Probes::default();
    let tcp = TcpStream::connect(addr).and_then(|mut stream| {
        stream.write_all(b"hello from a sandboxed script\n")?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply)?;
        Ok(format!("a connection ({n} bytes back)"))
    });
    probes.attempt(&format!("TCP connect {addr}"), tcp);
    probes.attempt(
        "TCP listen",
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
    );
    let udp = UdpSocket::bind("127.0.0.1:0").and_then(|socket| socket.send_to(b"hello", addr));
    probes.attempt(
        &format!("UDP send to {addr}"),
        udp.map(|n| format!("{n} bytes sent")),
    );
    probes.verdict()
}

pub fn dns(host: &str) -> Result<String, String> {
    let mut probes = Probes::default();
    let addrs = (host, 80)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| a.to_string()).collect::<Vec<_>>().join(","));
    probes.attempt(&format!("resolve {host}"), addrs);
    probes.verdict()
}

/// The items joined, or an error saying there were none.
fn not_empty(items: Vec<String>) -> std::io::Result<String> {
    if items.is_empty() {
        Err(std::io::Error::other("empty"))
    } else {
        Ok(items.join(" "))
    }
}
