//! The servers a run starts: the origin and the proxies under test, each from a config
//! generated into the run's [`WorkDir`], each a [`Managed`] child in the foreground (no
//! daemons), so that stopping the runner in any way stops them.
//!
//! The contenders are set up alike: one worker, keep-alive on both sides with upstream
//! connection reuse, no access log. The `-tls` ones terminate TLS with the run's certificate
//! ([`super::tls`]) and proxy in plain HTTP to the same origin.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{Managed, Spec, WorkDir};
use super::tls::{self, Certificate};
use super::{BodySize, Error};

/// A proxy under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ringway,
    /// Ringway with an API whose requests pass a rate limit, a quota and a cache lookup that
    /// always misses (`bench/configs/api-policies.yaml`).
    RingwayApiMiss,
    /// The same API, every request after the first a cache hit.
    RingwayApiHit,
    Nginx,
    Haproxy,
    /// Ringway terminating TLS ([`ringway_tls_conf`]).
    RingwayTls,
    /// nginx terminating TLS ([`nginx_tls_conf`]).
    NginxTls,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Ringway,
        Kind::RingwayApiMiss,
        Kind::RingwayApiHit,
        Kind::Nginx,
        Kind::Haproxy,
        Kind::RingwayTls,
        Kind::NginxTls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ringway => "ringway",
            Kind::RingwayApiMiss => "ringway-api-miss",
            Kind::RingwayApiHit => "ringway-api-hit",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::RingwayTls => "ringway-tls",
            Kind::NginxTls => "nginx-tls",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == text)
    }

    /// Whether this contender is Ringway itself (under any configuration).
    pub fn is_ringway(self) -> bool {
        matches!(
            self,
            Kind::Ringway | Kind::RingwayApiMiss | Kind::RingwayApiHit | Kind::RingwayTls
        )
    }

    /// Whether clients reach it over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::RingwayTls | Kind::NginxTls)
    }
}

/// Where our own binaries and the repository are.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub repo: PathBuf,
    pub ringway: PathBuf,
}

/// A started server.
pub struct Running {
    pub name: String,
    pub port: u16,
    pub child: Managed,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// nginx serving the bodies as files from `root` (one worker).
pub fn nginx_origin_conf(dir: &Path, port: u16, root: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/origin.pid;
error_log {d}/origin.error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    sendfile on;
    etag off;
    open_file_cache max=64 inactive=1h;
    open_file_cache_valid 1h;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
    }}
}}
",
        root = root.display()
    )
}

/// nginx as a reverse proxy with upstream keep-alive (one worker).
pub fn nginx_proxy_conf(dir: &Path, port: u16, origin_port: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx-proxy.pid;
error_log {d}/nginx-proxy.error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
"
    )
}

/// HAProxy with one thread, reusing upstream connections for any request.
pub fn haproxy_conf(port: u16, origin_port: u16) -> String {
    format!(
        "global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    http-reuse always

frontend proxy
    bind 127.0.0.1:{port}
    default_backend origin

backend origin
    server origin 127.0.0.1:{origin_port}
"
    )
}

/// nginx terminating TLS with `cert`, then proxying as [`nginx_proxy_conf`] does (one worker):
/// TLS 1.2 and 1.3, session tickets (TLS 1.3 resumption) and a shared session cache (TLS 1.2
/// session ids).
pub fn nginx_tls_conf(dir: &Path, port: u16, origin_port: u16, cert: &Certificate) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx-tls.pid;
error_log {d}/nginx-tls.error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1h;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}
    }}
}}
",
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
}

/// Ringway terminating TLS with `cert` on its one listener, proxying every request to the
/// origin as `examples/basic-proxy.yaml` does.
pub fn ringway_tls_conf(port: u16, origin_port: u16, workers: usize, cert: &Certificate) -> String {
    format!(
        "workers: {workers}
listeners:
  - name: main
    address: 127.0.0.1:{port}
    tls:
      certificates:
        - cert: {cert}
          key: {key}
      session_tickets: true
backends:
  - name: backend
    targets:
      - url: http://127.0.0.1:{origin_port}
routes:
  - name: all
    backend: backend
",
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
}

/// Ringway as an origin: each body size answered by a `return_response` route.
pub fn ringway_origin_conf(port: u16, workers: usize, bodies: &[BodySize]) -> String {
    let mut text = format!(
        "workers: {workers}\nlisteners:\n  - name: origin\n    address: 127.0.0.1:{port}\nroutes:\n"
    );
    for b in bodies {
        text.push_str(&format!(
            "  - name: body-{name}\n    matches: [{{path: {{type: exact, value: {path}}}}}]\n    \
             return_response: {{status: 200, body: \"{body}\"}}\n",
            name = b.name,
            path = b.path,
            body = "x".repeat(b.bytes)
        ));
    }
    text
}

/// The origin of the peer runs: nginx serving `bodies` at their paths, on `cpus`.
pub fn start_nginx_origin(
    dir: &WorkDir,
    port: u16,
    cpus: &[usize],
    bodies: &[BodySize],
) -> Result<Running, Error> {
    let root = dir.file("www");
    for b in bodies {
        dir.write(
            &format!("www/{}", b.path.trim_start_matches('/')),
            vec![b'x'; b.bytes],
        )?;
    }
    let conf = dir.write("origin.conf", nginx_origin_conf(&dir.path, port, &root))?;
    let child = Spec::new("origin (nginx)", "nginx", &dir.file("origin.log"))
        .args(nginx_args(&dir.path, &conf, "origin"))
        .cpus(cpus)
        .start()?;
    Ok(Running {
        name: "origin".into(),
        port,
        child,
    })
}

/// The origin of the scaling runs: Ringway answering by itself, with `workers` workers.
pub fn start_ringway_origin(
    dir: &WorkDir,
    bins: &Binaries,
    port: u16,
    workers: usize,
    cpus: &[usize],
    bodies: &[BodySize],
) -> Result<Running, Error> {
    let conf = dir.write("origin.yaml", ringway_origin_conf(port, workers, bodies))?;
    let child = Spec::new("origin (ringway)", &bins.ringway, &dir.file("origin.log"))
        .args([
            "run".to_string(),
            "--config".into(),
            conf.display().to_string(),
        ])
        .env("RINGWAY_LOG", "warn")
        .cpus(cpus)
        .start()?;
    Ok(Running {
        name: "origin".into(),
        port,
        child,
    })
}

/// Starts contender `kind` on `port` in front of the origin, with `workers` workers on `cpus`.
pub fn start(
    kind: Kind,
    dir: &WorkDir,
    bins: &Binaries,
    port: u16,
    origin_port: u16,
    workers: usize,
    cpus: &[usize],
) -> Result<Running, Error> {
    let log = dir.file(&format!("{}.log", kind.name()));
    let spec = match kind {
        Kind::Ringway => Spec::new("ringway", &bins.ringway, &log)
            .args([
                "run".to_string(),
                "--config".into(),
                bins.repo
                    .join("examples/basic-proxy.yaml")
                    .display()
                    .to_string(),
            ])
            .env("RINGWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("RINGWAY_WORKERS", workers.to_string())
            .env("RINGWAY_BACKEND", format!("http://127.0.0.1:{origin_port}"))
            .env("RINGWAY_LOG", "warn"),
        Kind::RingwayApiMiss | Kind::RingwayApiHit => Spec::new(kind.name(), &bins.ringway, &log)
            .args([
                "run".to_string(),
                "--config".into(),
                bins.repo
                    .join("bench/configs/api-policies.yaml")
                    .display()
                    .to_string(),
            ])
            .env("RINGWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("RINGWAY_WORKERS", workers.to_string())
            .env("RINGWAY_BACKEND", format!("http://127.0.0.1:{origin_port}"))
            .env(
                "RINGWAY_CACHE_STATUS",
                if kind == Kind::RingwayApiHit {
                    "200"
                } else {
                    "599"
                },
            )
            .env(
                "RINGWAY_STATE",
                dir.file(&format!("{}.state", kind.name()))
                    .display()
                    .to_string(),
            )
            .env("RINGWAY_LOG", "warn"),
        Kind::Nginx => {
            let conf = dir.write(
                "nginx-proxy.conf",
                nginx_proxy_conf(&dir.path, port, origin_port),
            )?;
            Spec::new("nginx", "nginx", &log).args(nginx_args(&dir.path, &conf, "nginx-proxy"))
        }
        Kind::RingwayTls => {
            let cert = tls::certificate(dir)?;
            let conf = dir.write(
                "ringway-tls.yaml",
                ringway_tls_conf(port, origin_port, workers, &cert),
            )?;
            Spec::new(kind.name(), &bins.ringway, &log)
                .args([
                    "run".to_string(),
                    "--config".into(),
                    conf.display().to_string(),
                ])
                .env("RINGWAY_LOG", "warn")
        }
        Kind::NginxTls => {
            let cert = tls::certificate(dir)?;
            let conf = dir.write(
                "nginx-tls.conf",
                nginx_tls_conf(&dir.path, port, origin_port, &cert),
            )?;
            Spec::new(kind.name(), "nginx", &log).args(nginx_args(&dir.path, &conf, "nginx-tls"))
        }
        Kind::Haproxy => {
            let conf = dir.write("haproxy.cfg", haproxy_conf(port, origin_port))?;
            Spec::new("haproxy", "haproxy", &log).args([
                "-db".to_string(),
                "-f".into(),
                conf.display().to_string(),
            ])
        }
    };
    if !kind.is_ringway() && workers != 1 {
        return Err(Error::Failed(format!(
            "{} runs with one worker only here",
            kind.name()
        )));
    }
    let child = spec.cpus(cpus).start()?;
    Ok(Running {
        name: kind.name().into(),
        port,
        child,
    })
}

/// `-p DIR -e ERRORLOG -c CONF`: nginx with its prefix and startup error log in the work
/// directory rather than under /var.
fn nginx_args(dir: &Path, conf: &Path, name: &str) -> Vec<String> {
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join(format!("{name}.error.log")).display().to_string(),
        "-c".into(),
        conf.display().to_string(),
    ]
}

/// Whether `program` is on the PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Installs the Debian packages of the missing programs (as root), or says how.
pub fn ensure_installed(needed: &[(&str, &str)]) -> Result<(), Error> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Failed(format!(
            "missing programs; install them (apt-get install {}) or run as root",
            missing.join(" ")
        )));
    }
    eprintln!("installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        return Err(Error::Failed(format!(
            "apt-get install {} failed",
            missing.join(" ")
        )));
    }
    Ok(())
}

/// The first line a program prints for its version (nginx and haproxy print to stderr).
pub fn version_of(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            // "HAProxy version 2.6.12 2026/10/17 - https://haproxy.org/": up to the " - ".
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(|l| l.split(" - ").next().unwrap_or(l).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_configs_name_their_ports() {
        let dir = Path::new("/tmp/x");
        let proxy = nginx_proxy_conf(dir, 8001, 8000);
        assert!(proxy.contains("listen 127.0.0.1:8001 reuseport;"));
        assert!(proxy.contains("server 127.0.0.1:8000;"));
        assert!(proxy.contains("keepalive 128;"));
        let origin = nginx_origin_conf(dir, 8000, &dir.join("www"));
        assert!(origin.contains("root /tmp/x/www;"));
        let haproxy = haproxy_conf(8002, 8000);
        assert!(haproxy.contains("nbthread 1"));
        assert!(haproxy.contains("http-reuse always"));
        assert!(haproxy.contains("bind 127.0.0.1:8002"));
    }

    #[test]
    fn kinds_parse_by_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert!(Kind::RingwayTls.is_tls() && Kind::RingwayTls.is_ringway());
        assert!(Kind::NginxTls.is_tls() && !Kind::NginxTls.is_ringway());
        assert!(!Kind::Nginx.is_tls());
        assert_eq!(Kind::parse("envoy"), None);
    }

    fn test_certificate(dir: &Path) -> Certificate {
        Certificate {
            cert: dir.join("tls/cert.pem"),
            key: dir.join("tls/key.pem"),
            ca: dir.join("tls/ca.pem"),
        }
    }

    #[test]
    fn the_nginx_tls_config_terminates_tls_and_proxies_like_nginx() {
        let dir = Path::new("/tmp/x");
        let conf = nginx_tls_conf(dir, 8443, 8000, &test_certificate(dir));
        for line in [
            "worker_processes 1;",
            "listen 127.0.0.1:8443 ssl reuseport;",
            "ssl_certificate /tmp/x/tls/cert.pem;",
            "ssl_certificate_key /tmp/x/tls/key.pem;",
            "ssl_session_tickets on;",
            "ssl_session_cache shared:SSL:10m;",
            "server 127.0.0.1:8000;",
            "keepalive 128;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log off;",
        ] {
            assert!(conf.contains(line), "{line} missing:\n{conf}");
        }
        // The same upstream and location as the plain contender.
        let plain = nginx_proxy_conf(dir, 8443, 8000);
        let upstream = |c: &str| {
            let start = c.find("upstream origin").unwrap();
            c[start..start + c[start..].find('}').unwrap()].to_string()
        };
        assert_eq!(upstream(&conf), upstream(&plain));
    }

    #[test]
    fn the_ringway_tls_config_loads_with_a_tls_listener() {
        let work = WorkDir::new("ringway-tls-conf").unwrap();
        let cert = tls::certificate(&work).unwrap();
        let text = ringway_tls_conf(8443, 8000, 1, &cert);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(doc["workers"], 1);
        let listener = &doc["listeners"][0];
        assert_eq!(listener["address"], "127.0.0.1:8443");
        let tls = &listener["tls"];
        let c = &tls["certificates"][0];
        assert_eq!(c["cert"].as_str().unwrap(), cert.cert.to_str().unwrap());
        assert_eq!(c["key"].as_str().unwrap(), cert.key.to_str().unwrap());
        assert_eq!(tls["session_tickets"], true);
        assert_eq!(
            doc["backends"][0]["targets"][0]["url"],
            "http://127.0.0.1:8000"
        );
        // The proxy loads it: TLS on its one listener, with the run's certificate.
        let config = ringway::config::load_str(&text, "ringway-tls.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.workers, Some(1));
        assert_eq!(config.listeners.len(), 1);
        let tls = config.listeners[0].tls.as_ref().expect("a TLS listener");
        assert!(tls.spec.session_tickets);
    }

    #[test]
    fn the_ringway_origin_config_loads() {
        let bodies = BodySize::parse_list("16,1k").unwrap();
        let text = ringway_origin_conf(9000, 2, &bodies);
        let config = ringway::config::load_str(&text, "origin.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.workers, Some(2));
    }
}
