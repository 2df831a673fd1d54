//! The `ringway` command: `run --config FILE`, `check FILE`, `key new|hash`, and with no
//! arguments the demo.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ringway::config::{self, Config};
use ringway::server::Server;
use ringway::snapshot::Snapshot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage:
  ringway                      run the demo: a gateway on 127.0.0.1:8080 in front of a built-in origin
  ringway run --config FILE    serve FILE
  ringway check FILE           validate FILE and print every error
  ringway key new              make a subscription key and print it with its sha256: hash
  ringway key hash KEY|-       print the sha256: hash of KEY (or of stdin, with -)
  ringway upgrade --pid PID    upgrade the running process PID to the binary now at its path (as SIGUSR2 does)
  ringway ctl COMMAND          drive a running gateway through its admin API (ringway ctl help)
  ringway import openapi FILE [--backend URL] [--name NAME] [--path PATH]
                               print the API an OpenAPI 3 document describes, as configuration
  ringway import gateway-api FILE|DIR... [--service-host TEMPLATE]
                               print the routes and backends of Gateway API manifests
  ringway --version

environment: RINGWAY_LOG=error|warn|info|debug (default info)";

/// The binary's path as started, and its arguments: an upgrade starts whatever is at that path
/// now, with the same arguments.
static STARTED_AS: std::sync::OnceLock<(std::path::PathBuf, Vec<String>)> =
    std::sync::OnceLock::new();

fn main() -> ExitCode {
    let exe = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .filter(|p| p.components().count() > 1)
        .and_then(|p| std::fs::canonicalize(p).ok())
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_default();
    let _ = STARTED_AS.set((exe, std::env::args().skip(1).collect()));
    ringway::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["demo"] => demo(),
        ["run", "--config", file] | ["run", "-c", file] => run_file(Path::new(file)),
        ["check", file] => check(file),
        ["key", rest @ ..] => key(rest),
        ["ctl", rest @ ..] => ringway::ctl::main(rest),
        ["import", rest @ ..] => ringway::import::cli::main(rest),
        ["upgrade", "--pid", pid] => upgrade(pid),
        ["--version" | "-V"] => {
            println!("ringway {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "ringway: unrecognised arguments: {}\n{USAGE}",
                args.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

fn check(file: &str) -> ExitCode {
    let loaded = config::load_file(Path::new(file)).and_then(Snapshot::build);
    match loaded {
        Ok(snapshot) => {
            let c = &snapshot.config;
            println!(
                "{file}: {} listener(s), {} backend(s), {} route(s), {} API(s) with {} \
                 operation(s): ok",
                c.listeners.len(),
                c.backends.len(),
                c.routes.len(),
                c.apis.len(),
                c.apis.iter().map(|a| a.operations.len()).sum::<usize>()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `ringway key new` and `ringway key hash KEY|-`: keys for subscriptions, whose config holds
/// only the `sha256:` hash.
fn key(args: &[&str]) -> ExitCode {
    use ringway::policy::auth::keys;
    const KEY_USAGE: &str = "usage: ringway key new | ringway key hash KEY | ringway key hash -";
    let key = match args {
        ["new"] => {
            let key = keys::new_key();
            println!("key:  {key}\nhash: {}", keys::hash_key(&key));
            return ExitCode::SUCCESS;
        }
        ["hash", "-"] => {
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("ringway: key hash: cannot read the key from stdin: {e}");
                return ExitCode::from(1);
            }
            let line = text.strip_suffix('\n').unwrap_or(&text);
            line.strip_suffix('\r').unwrap_or(line).to_string()
        }
        ["hash", key] => key.to_string(),
        _ => {
            eprintln!("{KEY_USAGE}");
            return ExitCode::from(2);
        }
    };
    if key.is_empty() {
        eprintln!("ringway: key hash: the key is empty\n{KEY_USAGE}");
        return ExitCode::from(2);
    }
    println!("{}", keys::hash_key(&key));
    ExitCode::SUCCESS
}

/// `ringway run --config FILE`: the file, or what the admin API last applied over it.
fn run_file(path: &Path) -> ExitCode {
    let source = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{source}: cannot read the file: {e}");
            return ExitCode::from(1);
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    if let Some(saved) = ringway::control::plane::startup_document(path, &text) {
        let applied = ringway::control::plane::applied_path(path);
        let applied_source = applied.display().to_string();
        let loaded = config::load_literal(&saved, &applied_source).and_then(|c| {
            Ok((
                c,
                config::document_value(&saved, &applied_source, &|_| None)?,
            ))
        });
        match loaded {
            Ok((config, document)) => return serve(config, None, Some(path), document),
            Err(e) => eprintln!(
                "ringway: error: the configuration applied through the admin API no longer                  loads; serving {source}:\n{e}"
            ),
        }
    }
    let loaded = config::load_str(&text, &source, &env)
        .and_then(|c| Ok((c, config::document_value(&text, &source, &env)?)));
    match loaded {
        Ok((config, document)) => serve(config, None, Some(path), document),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn demo() -> ExitCode {
    let origin = match ringway::demo::start("127.0.0.1:0".parse().expect("loopback")) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("ringway: cannot start the demo origin: {e}");
            return ExitCode::from(1);
        }
    };
    let origin_text = origin.to_string();
    let env = |name: &str| {
        if name == "DEMO_ORIGIN" {
            Some(origin_text.clone())
        } else {
            std::env::var(name).ok()
        }
    };
    let text = include_str!("../../examples/demo.yaml");
    let loaded = config::load_str(text, "examples/demo.yaml", &env)
        .and_then(|c| Ok((c, config::document_value(text, "examples/demo.yaml", &env)?)));
    match loaded {
        Ok((config, document)) => serve(config, Some(origin), None, document),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn serve(
    config: Config,
    demo_origin: Option<std::net::SocketAddr>,
    source: Option<&Path>,
    document: serde_json::Value,
) -> ExitCode {
    let snapshot = match Snapshot::build(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    // Cluster mode: the configuration stored in Redis, if any, wins over the local one.
    let (mut snapshot, document, joined) = ringway::cluster::sync::startup(snapshot, document);
    // The portal's subscriptions are in force from the first request; the plane keeps the
    // document's own keys apart, for the switches to come.
    let doc_keys = snapshot.config.keys.clone();
    let portal_opened = match snapshot
        .config
        .portal
        .as_ref()
        .map(ringway::portal::Portal::open)
    {
        Some(Ok(p)) => {
            snapshot.config.keys = p.first_keys(&doc_keys);
            Some(p)
        }
        Some(Err(e)) => {
            eprintln!("ringway: error: the developer portal cannot start: {e}");
            return ExitCode::from(1);
        }
        None => None,
    };
    let drain = snapshot.config.timeouts.drain;
    // Signals are caught before any worker starts, so that none is lost. SIGHUP, SIGUSR1 and
    // SIGUSR2 would otherwise end the process at once, silently.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let admin = snapshot.config.admin.clone();
    let portal = snapshot.config.portal.clone();
    let schemes: Vec<&'static str> = snapshot
        .config
        .listeners
        .iter()
        .map(|l| if l.tls.is_some() { "https" } else { "http" })
        .collect();
    // Started by an upgrade: the old process's sockets.
    let inherited = match ringway::server::upgrade::receive() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ringway: error: cannot take the sockets of the process being upgraded: {e}");
            return ExitCode::from(1);
        }
    };
    let mut server = match Server::start_with(snapshot, None, inherited) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringway: {e}");
            return ExitCode::from(1);
        }
    };
    for ((name, addr), scheme) in server.listeners.iter().zip(&schemes) {
        eprintln!("ringway: listening on {scheme}://{addr} (listener {name})");
    }
    let plane = ringway::control::plane::Plane::new(
        Arc::clone(&server.control),
        Arc::clone(&server.reloader),
        source.map(Path::to_path_buf),
        document,
    );
    if let Some(log) = &server.access_log {
        let _ = plane.access_log.set(Arc::clone(log));
    }
    if let Some(spans) = &server.spans {
        let _ = plane.spans.set(Arc::clone(spans));
    }
    ringway::control::analytics::start(Arc::clone(&server.control));
    plane.set_doc_keys(doc_keys);
    if let Some(portal) = &portal_opened {
        match portal.start(&plane) {
            Ok(()) => {
                if let (Some((_, addr)), Some(scheme)) = (server.listeners.first(), schemes.first())
                {
                    let mut addr = *addr;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    let _ = portal.gateway.set(format!("{scheme}://{addr}"));
                }
            }
            Err(e) => {
                eprintln!("ringway: error: the developer portal cannot start: {e}");
                server.control.drain();
                server.wait(drain + Duration::from_millis(500));
                return ExitCode::from(1);
            }
        }
    }
    let cluster_sync = match joined.map(|j| ringway::cluster::sync::start(&plane, j)) {
        Some(Ok(thread)) => Some(thread),
        Some(Err(e)) => {
            eprintln!(
                "ringway: warning: cannot start the cluster sync thread ({e}); purges and \
                 configuration changes stay on this node"
            );
            None
        }
        None => None,
    };
    if let Err(e) = plane.watch_file() {
        eprintln!(
            "ringway: warning: cannot watch the configuration file for changes ({e}); \
             reload it with SIGHUP or POST /reload"
        );
    }
    if let Some(admin) = &admin {
        match ringway::control::admin::start(admin, Arc::clone(&plane)) {
            Ok(addr) => eprintln!("ringway: admin listening on http://{addr}"),
            Err(e) => {
                eprintln!(
                    "ringway: error: cannot open the admin listener on {}: {e}",
                    admin.address
                );
                server.control.drain();
                server.wait(drain + Duration::from_millis(500));
                return ExitCode::from(1);
            }
        }
    }
    if let Some(settings) = &portal {
        if let ringway::config::PortalListener::Own(address) = settings.listener {
            match ringway::control::admin::start_portal(
                address,
                settings.tls.clone(),
                Arc::clone(&plane),
            ) {
                Ok(addr) => eprintln!(
                    "ringway: portal listening on {}://{addr}/portal/",
                    if settings.tls.is_some() {
                        "https"
                    } else {
                        "http"
                    }
                ),
                Err(e) => {
                    eprintln!("ringway: error: cannot open the portal listener on {address}: {e}");
                    server.control.drain();
                    server.wait(drain + Duration::from_millis(500));
                    return ExitCode::from(1);
                }
            }
        }
    }
    eprintln!("ringway: ready ({} workers)", server.workers.len());
    if let Some(inherited) = server.inherited.take() {
        inherited.ready();
    }
    // systemd (Type=notify): ready, and this is the main process (after an upgrade, the new
    // one says so).
    notify_systemd(&format!("READY=1\nMAINPID={}", std::process::id()));
    let (upgrade_tx, upgrade_rx) = std::sync::mpsc::channel::<Result<u32, String>>();
    let mut upgrading = false;
    if let Some(origin) = demo_origin {
        let (_, addr) = &server.listeners[0];
        println!("Ringway demo: a gateway on http://{addr} in front of a demo origin on http://{origin}\nTry:");
        for path in [
            "/hello",
            "/status/418",
            "/delay/200",
            "/bytes/64",
            "/healthz",
            "/hi",
        ] {
            println!("  curl -i http://{addr}{path}");
        }
        println!("  curl -i http://{addr}/echo --data 'hello'");
        println!("Stop with Ctrl-C.");
    }
    let control = Arc::clone(&server.control);
    // Wait for a stop signal, or for a worker to die. A dead worker is not restarted: the
    // process drains the others and exits non-zero with the panic message, so that its
    // supervisor (systemd, Kubernetes) starts a clean one. Nothing is left listening into
    // the void meanwhile: the dead worker's listeners closed with its runtime.
    let died = loop {
        if let Some(signal) = signals.pending().find_map(|signal| match signal {
            signal_hook::consts::SIGHUP => {
                plane.sighup();
                None
            }
            signal_hook::consts::SIGUSR1 if server.access_log.is_some() => {
                // logrotate's convention: the file was renamed; write to a new one.
                if let Some(log) = &server.access_log {
                    log.reopen();
                }
                None
            }
            signal_hook::consts::SIGUSR2 if !upgrading => {
                upgrading = true;
                let handoff = server
                    .reloader
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handoff();
                let (exe, args) = STARTED_AS.get().cloned().unwrap_or_default();
                eprintln!(
                    "ringway: signal SIGUSR2: upgrading: starting {} and handing it the listeners",
                    exe.display()
                );
                let tx = upgrade_tx.clone();
                std::thread::spawn(move || {
                    let _ = tx.send(ringway::server::upgrade::hand_over(&exe, &args, &handoff));
                });
                None
            }
            signal_hook::consts::SIGUSR1 | signal_hook::consts::SIGUSR2 => {
                eprintln!("ringway: signal {}: ignored", signal_name(signal));
                None
            }
            other => Some(other),
        }) {
            eprintln!(
                "ringway: signal {}: draining (up to {drain:?})",
                signal_name(signal)
            );
            break None;
        }
        if let Some(index) = server.workers.iter().position(|w| w.thread.is_finished()) {
            break Some(index);
        }
        if let Ok(result) = upgrade_rx.try_recv() {
            upgrading = false;
            let status = ringway::server::upgrade::status_path(std::process::id());
            match result {
                Ok(pid) => {
                    eprintln!(
                        "ringway: upgraded: process {pid} serves the listeners; this one stops \
                         accepting and drains (up to {drain:?})"
                    );
                    let _ = std::fs::write(&status, format!("ok {pid}\n"));
                    control
                        .handoff
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    break None;
                }
                Err(why) => {
                    eprintln!("ringway: error: upgrade failed, this process keeps serving: {why}");
                    let _ = std::fs::write(&status, format!("failed: {why}\n"));
                }
            }
        }
        plane.poll_certs(std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
    };
    control.drain();
    if let Some(sync) = cluster_sync {
        sync.stop(Duration::from_secs(2));
    }
    if let Some(index) = died {
        let worker = server.workers.remove(index);
        let message = match worker.thread.join() {
            Err(payload) => panic_message(&*payload),
            Ok(()) => "its thread ended".to_string(),
        };
        eprintln!(
            "ringway: error: worker {index} died: {message}; draining the other workers and \
             exiting (status 70) so that the process is restarted"
        );
        server.wait(drain + Duration::from_millis(500));
        flush_observers(&plane);
        eprintln!("ringway: stopped");
        return ExitCode::from(70);
    }
    let exit = match server.wait(drain + Duration::from_millis(500)) {
        Some(finished) => {
            for (index, metrics) in finished {
                eprintln!(
                    "ringway: worker {index} served {} requests",
                    metrics.requests
                );
            }
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("ringway: drain deadline passed with requests in flight; exiting");
            ExitCode::SUCCESS
        }
    };
    flush_observers(&plane);
    eprintln!("ringway: stopped");
    exit
}

/// Writes out what the workers logged and traced last (their ends flush when they exit).
fn flush_observers(plane: &ringway::control::plane::Plane) {
    if let Some(log) = plane.access_log.get() {
        log.drain(Duration::from_secs(2));
    }
    if let Some(spans) = plane.spans.get() {
        spans.drain(Duration::from_secs(2));
    }
}

/// `ringway upgrade --pid PID`: asks the process to upgrade (SIGUSR2) and waits for the
/// result.
fn upgrade(pid: &str) -> ExitCode {
    let Ok(pid) = pid.parse::<u32>() else {
        eprintln!("ringway upgrade: --pid takes a process id, not {pid:?}");
        return ExitCode::from(2);
    };
    let status = ringway::server::upgrade::status_path(pid);
    let _ = std::fs::remove_file(&status);
    // SAFETY: kill(2) with a signal number has no memory effects.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) } != 0 {
        eprintln!(
            "ringway upgrade: cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(1);
    }
    let deadline = std::time::Instant::now()
        + ringway::server::upgrade::READY_TIMEOUT
        + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let text = text.trim();
            let _ = std::fs::remove_file(&status);
            return match text.strip_prefix("ok ") {
                Some(new) => {
                    println!(
                        "ringway upgrade: process {new} serves; process {pid} drains and exits"
                    );
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("ringway upgrade: {text}; process {pid} keeps serving");
                    ExitCode::from(1)
                }
            };
        }
        if std::time::Instant::now() >= deadline {
            eprintln!("ringway upgrade: no answer from process {pid}");
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `state` to systemd's notification socket, when the service has one.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = match path.strip_prefix('@') {
        // An abstract socket address.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at {path}: {e}");
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGHUP => "SIGHUP",
        signal_hook::consts::SIGUSR1 => "SIGUSR1",
        signal_hook::consts::SIGUSR2 => "SIGUSR2",
        _ => "unknown",
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}
