//! The control plane: what changes the running configuration, from any trigger (SIGHUP, a
//! change of the configuration file, the admin API), one change at a time.
//!
//! It keeps the document being served (as JSON, variables substituted), applies new ones
//! through the [`Reloader`], records each attempt for `/status` and `/metrics`, and persists
//! what the admin API applied.
//!
//! **Persistence.** A change made through the admin API is written to a state file beside
//! the configuration file, `FILE.applied`: the applied document, with the SHA-256 of the
//! configuration file's text it was based on in its first lines. It is written atomically
//! (a temporary file in the same directory, fsync, rename, fsync of the directory). On start
//! ([`startup_document`]), when the hash matches the configuration file, the state file is
//! served; when the file has changed since, the file wins and the state file is renamed
//! `FILE.applied.stale`. A reload of the file itself (SIGHUP, a change of the file) replaces
//! the API's changes the same way.
//!
//! **Cluster mode.** With `cluster:`, every change applied here (the admin API's, a reload of
//! the file) is then pushed to the cluster's Redis for the other nodes, and documents the
//! other nodes push are applied here without being pushed again ([`Plane::apply_pushed`]);
//! see [`crate::cluster::sync`].

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::sync::Published;
use crate::config::{self, Config};
use crate::server::{Control, ReloadError, Reloaded, Reloader};
use crate::tls::reload::CertWatch;

/// One reload attempt, as `/status` reports the last one.
#[derive(Clone, Debug)]
pub struct ReloadRecord {
    pub trigger: String,
    pub ok: bool,
    /// Unix seconds.
    pub at: u64,
    /// From the trigger to every worker switched (for a failure, to the refusal).
    pub duration: Duration,
    pub generation: u64,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

struct Inner {
    /// The document being served.
    document: serde_json::Value,
    /// The digest of the configuration file's text last applied, and last tried.
    file_applied: Option<String>,
    file_tried: Option<String>,
    last: Option<ReloadRecord>,
    certs: CertWatch,
    /// The keys the document in force compiled to, before run-time subscriptions join them.
    doc_keys: crate::policy::auth::keys::KeyTable,
    /// The digest of the files the configuration in force read besides itself.
    inputs: Vec<PathBuf>,
}

/// What the admin listener and the process's signal loop share to change the configuration.
pub struct Plane {
    pub control: Arc<Control>,
    pub reloader: Arc<Mutex<Reloader>>,
    /// The configuration file; None for a configuration that has none (the demo).
    source: Option<PathBuf>,
    /// When the process started serving (unix seconds, and for uptime).
    pub started_unix: u64,
    pub started: Instant,
    inner: Mutex<Inner>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// The last successful reload's latency, in microseconds.
    pub last_reload_us: AtomicU64,
    /// The access log and span export, when configured (for their counters).
    pub access_log: std::sync::OnceLock<Arc<super::access_log::AccessLog>>,
    pub spans: std::sync::OnceLock<Arc<super::otlp::SpanExport>>,
    /// Cluster mode: cluster-wide purges and configuration distribution.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::sync::ClusterSync>>,
    /// The developer portal, whose subscriptions join the document's.
    pub portal: std::sync::OnceLock<Arc<crate::portal::Portal>>,
}

/// The result of a change through the admin API.
pub enum Applied {
    /// `dry_run`: valid, nothing switched. Settings that would apply only at the next start.
    Checked(Vec<String>),
    /// Applied; in cluster mode, pushed to the other nodes (or why it was not).
    Reloaded(Reloaded, Option<Published>),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Plane {
    pub fn new(
        control: Arc<Control>,
        reloader: Arc<Mutex<Reloader>>,
        source: Option<PathBuf>,
        document: serde_json::Value,
    ) -> Arc<Plane> {
        let (certs, doc_keys, inputs) = {
            let r = lock(&reloader);
            let config = &r.snapshot().config;
            (
                CertWatch::new(config),
                config.keys.clone(),
                config.inputs.clone(),
            )
        };
        let file = source
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|t| digest_with(&t, &inputs));
        Arc::new(Plane {
            control,
            reloader,
            source,
            started_unix: unix_now(),
            started: Instant::now(),
            inner: Mutex::new(Inner {
                document,
                file_applied: file.clone(),
                file_tried: file,
                last: None,
                certs,
                doc_keys,
                inputs,
            }),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            last_reload_us: AtomicU64::new(0),
            access_log: std::sync::OnceLock::new(),
            spans: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            portal: std::sync::OnceLock::new(),
        })
    }

    /// The keys of the document in force, apart from those run-time subscriptions add (the
    /// first configuration was switched to with them already joined).
    pub fn set_doc_keys(&self, keys: crate::policy::auth::keys::KeyTable) {
        lock(&self.inner).doc_keys = keys;
    }

    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The document being served (variables substituted; secrets not redacted).
    pub fn document(&self) -> serde_json::Value {
        lock(&self.inner).document.clone()
    }

    pub fn last_reload(&self) -> Option<ReloadRecord> {
        lock(&self.inner).last.clone()
    }

    /// Reloads the configuration file (SIGHUP, a change of the file, `POST /reload`). The
    /// file replaces any change made through the admin API. Without a file, reloads the
    /// listeners' certificates only.
    ///
    /// `Ok(None)`: the file is unchanged since it was applied (or, for a file change, since
    /// it was tried), and nothing was done.
    pub fn reload_file(&self, trigger: &str) -> Result<Option<Reloaded>, ReloadError> {
        self.reload_file_pushed(trigger)
            .map(|reloaded| reloaded.map(|(r, _)| r))
    }

    /// As [`Plane::reload_file`], with what became of the push: in cluster mode the reloaded
    /// file is the cluster's new version.
    pub fn reload_file_pushed(
        &self,
        trigger: &str,
    ) -> Result<Option<(Reloaded, Option<Published>)>, ReloadError> {
        let asked = Instant::now();
        let mut inner = lock(&self.inner);
        let Some(path) = self.source.clone() else {
            inner.certs.reload_all(trigger);
            return Err(ReloadError {
                errors: vec![
                    "this configuration has no file to reload (certificates were reloaded)"
                        .to_string(),
                ],
            });
        };
        let source = path.display().to_string();
        let text = std::fs::read_to_string(&path);
        // One change seen twice (the file watch, then the signal sent after writing it) makes
        // one reload: a file change whose text was already tried, or a signal for the text
        // in force, changes nothing (a signal still reloads the certificates).
        let seen = text
            .as_ref()
            .ok()
            .map(|t| digest_with(t.as_bytes(), &inner.inputs));
        if seen.is_some() {
            let already = if trigger == "file change" {
                &inner.file_tried
            } else {
                &inner.file_applied
            };
            if *already == seen {
                if trigger != "file change" {
                    inner.certs.reload_all(trigger);
                }
                log::info!("{trigger}: {source} is unchanged; nothing to reload");
                return Ok(None);
            }
            inner.file_tried.clone_from(&seen);
        }
        let loaded = text
            .map_err(|e| ReloadError {
                errors: vec![format!("{source}: cannot read the file: {e}")],
            })
            .and_then(|text| {
                let env = |name: &str| std::env::var(name).ok();
                let document = config::document_value(&text, &source, &env)?;
                let config = config::load_str(&text, &source, &env)?;
                Ok((document, config))
            });
        let result = loaded.and_then(|(document, config)| {
            let inputs = config.inputs.clone();
            let reloaded = self.switch(&mut inner, config, asked)?;
            inner.document = document;
            // The digest of what was read now (its inputs may differ from the last ones').
            inner.file_applied = std::fs::read(&path).ok().map(|t| digest_with(&t, &inputs));
            inner.inputs = inputs;
            set_aside(&applied_path(&path), "the configuration file was reloaded");
            Ok(reloaded)
        });
        self.record(&mut inner, trigger, asked, &result);
        let published = match &result {
            Ok(_) => self.push(&inner),
            Err(_) => None,
        };
        result.map(|r| Some((r, published)))
    }

    /// Applies an edited document (the admin API's changes to APIs, backends, products and
    /// subscriptions); with `dry_run`, only checks it.
    pub fn apply_document(
        &self,
        document: serde_json::Value,
        dry_run: bool,
    ) -> Result<Applied, ReloadError> {
        let asked = Instant::now();
        let text = serde_yaml_ng::to_string(&document).map_err(|e| ReloadError {
            errors: vec![format!("the edited document cannot be written: {e}")],
        })?;
        let config = match config::load_literal_in(&text, "admin API", self.dir().as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let result = Err(ReloadError::from(e));
                if !dry_run {
                    self.record(&mut lock(&self.inner), "admin API", asked, &result);
                }
                return result.map(|r| Applied::Reloaded(r, None));
            }
        };
        self.apply_config(document, config, dry_run, asked)
    }

    fn apply_config(
        &self,
        document: serde_json::Value,
        config: Config,
        dry_run: bool,
        asked: Instant,
    ) -> Result<Applied, ReloadError> {
        let mut inner = lock(&self.inner);
        // Cluster mode: a change that would take the node out of its cluster is refused.
        if let Some(Err(e)) = self.cluster.get().map(|c| c.check_identity(&config)) {
            let result = Err(ReloadError {
                errors: vec![format!("admin API: {e}")],
            });
            if !dry_run {
                self.record(&mut inner, "admin API", asked, &result);
            }
            return result.map(|r| Applied::Reloaded(r, None));
        }
        if dry_run {
            return lock(&self.reloader).check(config).map(Applied::Checked);
        }
        let result = self.switch(&mut inner, config, asked);
        if result.is_ok() {
            if let Some(path) = &self.source {
                if let Err(e) = persist(path, &document) {
                    log::error!("the change is applied but cannot be kept for the next start: {e}");
                }
            }
            inner.document = document;
        }
        self.record(&mut inner, "admin API", asked, &result);
        let published = match &result {
            Ok(_) => self.push(&inner),
            Err(_) => None,
        };
        result.map(|r| Applied::Reloaded(r, published))
    }

    /// Cluster mode: pushes the document in force (just applied) to the other nodes. Called
    /// with the plane locked, so that pushes leave in the order the changes were applied.
    fn push(&self, inner: &Inner) -> Option<Published> {
        self.cluster.get()?.push(&inner.document)
    }

    /// Cluster mode: pushes the document in force again (`why`: a change that could not be
    /// stored before, or a Redis that lost the stored one).
    pub fn push_current(&self, why: &str) {
        let inner = lock(&self.inner);
        if let Some(Ok(version)) = self.push(&inner) {
            log::info!("cluster: version {version} stored ({why})");
        }
    }

    /// Cluster mode: applies `document`, version `version` of the cluster's configuration
    /// (pushed by node `from`), with the same two-phase reload as any change, and without
    /// pushing it again. The trigger is `cluster push vN`. A version not above the one served
    /// is skipped; a document equal to the one in force only takes its version. One that does
    /// not validate here is refused and reported; the configuration in force keeps serving.
    pub fn apply_pushed(&self, document: serde_json::Value, version: u64, from: &str) {
        let Some(sync) = self.cluster.get() else {
            return;
        };
        let asked = Instant::now();
        let mut inner = lock(&self.inner);
        if !sync.wants(version) {
            return;
        }
        if document == inner.document {
            sync.pushed_applied(version, from);
            log::info!(
                "cluster: version {version} (from node {from}) is the configuration in force;                  nothing to reload"
            );
            return;
        }
        let trigger = crate::cluster::sync::push_label(version);
        let result = serde_yaml_ng::to_string(&document)
            .map_err(|e| ReloadError {
                errors: vec![format!("{trigger}: the document cannot be written: {e}")],
            })
            .and_then(|text| {
                config::load_literal_in(&text, &trigger, self.dir().as_deref())
                    .map_err(ReloadError::from)
            })
            .and_then(|config| match sync.check_identity(&config) {
                Ok(()) => Ok(config),
                Err(e) => Err(ReloadError {
                    errors: vec![format!("{trigger}: {e}")],
                }),
            })
            .and_then(|config| self.switch(&mut inner, config, asked));
        match &result {
            Ok(_) => {
                if let Some(path) = &self.source {
                    if let Err(e) = persist(path, &document) {
                        log::error!(
                            "{trigger} is applied but cannot be kept for the next start: {e}"
                        );
                    }
                }
                inner.document = document;
                sync.pushed_applied(version, from);
            }
            Err(e) => sync.pushed_refused(version, from, &e.errors),
        }
        self.record(&mut inner, &trigger, asked, &result);
    }

    /// The directory relative paths of an edited document are read from: the configuration
    /// file's.
    fn dir(&self) -> Option<PathBuf> {
        self.source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
    }

    /// Switches every worker to `config`, with the portal's subscriptions joining the
    /// document's keys.
    fn switch(
        &self,
        inner: &mut Inner,
        mut config: Config,
        asked: Instant,
    ) -> Result<Reloaded, ReloadError> {
        let doc_keys = config.keys.clone();
        if let Some(portal) = self.portal.get() {
            config.keys = doc_keys.with_runtime(&portal.key_subscriptions());
        }
        let mut reloader = lock(&self.reloader);
        let reloaded = reloader.apply(config, asked)?;
        inner.certs = CertWatch::new(&reloader.snapshot().config);
        inner.doc_keys = doc_keys;
        Ok(reloaded)
    }

    /// Puts the portal's subscriptions as they are now in force (after one was issued,
    /// approved, regenerated or cancelled): the configuration in force again, with new keys,
    /// through the same two-phase switch as any reload.
    pub fn refresh_keys(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let asked = Instant::now();
        let mut inner = lock(&self.inner);
        let mut config = lock(&self.reloader).snapshot().config.clone();
        config.keys = inner.doc_keys.clone();
        let result = self.switch(&mut inner, config, asked);
        self.record(&mut inner, trigger, asked, &result);
        result
    }

    fn record(
        &self,
        inner: &mut Inner,
        trigger: &str,
        asked: Instant,
        result: &Result<Reloaded, ReloadError>,
    ) {
        let record = match result {
            Ok(r) => {
                self.reloads_ok.fetch_add(1, Relaxed);
                self.last_reload_us
                    .store(r.total.as_micros() as u64, Relaxed);
                log::info!(
                    "configuration {} in force ({trigger}): all workers switched in {:.1} ms ({:.1} ms from the {trigger})",
                    r.generation,
                    r.switch.as_secs_f64() * 1e3,
                    r.total.as_secs_f64() * 1e3,
                );
                for w in &r.warnings {
                    log::warn!("{w}");
                }
                ReloadRecord {
                    trigger: trigger.to_string(),
                    ok: true,
                    at: unix_now(),
                    duration: r.total,
                    generation: r.generation,
                    errors: Vec::new(),
                    warnings: r.warnings.clone(),
                }
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Relaxed);
                log::error!(
                    "configuration refused ({trigger}); the one in force keeps serving:\n{e}"
                );
                ReloadRecord {
                    trigger: trigger.to_string(),
                    ok: false,
                    at: unix_now(),
                    duration: asked.elapsed(),
                    generation: lock(&self.reloader).generation(),
                    errors: e.errors.clone(),
                    warnings: Vec::new(),
                }
            }
        };
        inner.last = Some(record);
    }

    /// SIGHUP: the configuration file, certificates included; without a file, the
    /// certificates.
    pub fn sighup(&self) {
        let _ = self.reload_file("SIGHUP");
    }

    /// Polls the listeners' certificate files (once a second at most).
    pub fn poll_certs(&self, now: Instant) {
        lock(&self.inner).certs.poll(now);
    }

    /// Watches the configuration file and reloads it when it changes (inotify on its
    /// directory, so that editors' and deploy tools' rename-into-place is seen; changes
    /// within [`DEBOUNCE`] of each other make one reload).
    pub fn watch_file(self: &Arc<Plane>) -> std::io::Result<()> {
        let Some(path) = self.source.clone() else {
            return Ok(());
        };
        let watch = FileWatch::new(&path)?;
        let plane = Arc::clone(self);
        std::thread::Builder::new()
            .name("ringway-config-watch".into())
            .spawn(move || loop {
                if !watch.wait_change() {
                    return;
                }
                // Let a burst of writes settle.
                while watch.changed_within(DEBOUNCE) {}
                let _ = plane.reload_file("file change");
            })?;
        Ok(())
    }
}

/// Changes of the configuration file closer together than this make one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The state file beside `config`.
pub fn applied_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

const BASE_PREFIX: &str = "# base: sha256:";

/// The digest of a configuration file's text and of the files it read besides itself.
fn digest_with(text: &[u8], inputs: &[PathBuf]) -> String {
    if inputs.is_empty() {
        return digest(text);
    }
    format!("{}+{}", digest(text), config::inputs_digest(inputs))
}

fn digest(text: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `document` to `config`'s state file, atomically.
fn persist(config: &Path, document: &serde_json::Value) -> std::io::Result<()> {
    let base = std::fs::read(config)?;
    let yaml = serde_yaml_ng::to_string(document).map_err(std::io::Error::other)?;
    let text = format!(
        "# The configuration last applied through the admin API, served on start while the\n\
         # configuration file is unchanged since (see docs/admin-api.md, Persistence).\n\
         {BASE_PREFIX}{}\n{yaml}",
        digest(&base)
    );
    write_atomically(&applied_path(config), text.as_bytes())
}

/// Writes `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never a part: a temporary file beside it, fsync, rename over, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        // Owner-only: the document holds the values of substituted variables (secrets).
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Renames a state file that no longer applies, keeping it for a person to look at.
fn set_aside(applied: &Path, why: &str) {
    if !applied.exists() {
        return;
    }
    let mut stale = applied.as_os_str().to_owned();
    stale.push(".stale");
    match std::fs::rename(applied, &stale) {
        Ok(()) => log::warn!(
            "{why}: the changes made through the admin API ({}) no longer apply; kept as {}",
            applied.display(),
            Path::new(&stale).display()
        ),
        Err(e) => log::error!("cannot set {} aside: {e}", applied.display()),
    }
}

/// What to serve on start for the configuration file `path` whose text is `text`: the
/// state file's document when it was based on this very text, else None (and a state file
/// based on another text is set aside).
pub fn startup_document(path: &Path, text: &str) -> Option<String> {
    let applied = applied_path(path);
    let saved = std::fs::read_to_string(&applied).ok()?;
    let base = saved
        .lines()
        .find_map(|l| l.strip_prefix(BASE_PREFIX))
        .unwrap_or("");
    if base == digest(text.as_bytes()) {
        log::info!(
            "serving the configuration last applied through the admin API ({})",
            applied.display()
        );
        Some(saved)
    } else {
        set_aside(&applied, "the configuration file changed since");
        None
    }
}

/// inotify on a file's directory, for events that name the file.
struct FileWatch {
    fd: std::os::fd::OwnedFd,
    name: std::ffi::OsString,
}

impl FileWatch {
    fn new(path: &Path) -> std::io::Result<FileWatch> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("the configuration path names no file"))?
            .to_owned();
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor this function just opened and nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("the configuration path holds a NUL byte"))?;
        let mask = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_CREATE | libc::IN_MODIFY;
        // SAFETY: the descriptor is an inotify instance and the path a valid C string.
        let wd = unsafe {
            libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), c_dir.as_ptr(), mask)
        };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileWatch { fd, name })
    }

    /// Blocks until an event names the file. False when the watch failed.
    fn wait_change(&self) -> bool {
        loop {
            match self.read_events(-1) {
                Some(true) => return true,
                Some(false) => continue,
                None => return false,
            }
        }
    }

    /// Whether another event for the file arrives within `window`.
    fn changed_within(&self, window: Duration) -> bool {
        let until = Instant::now() + window;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.read_events(left.as_millis() as i32) {
                Some(true) => return true,
                Some(false) => continue,
                None => return false,
            }
        }
    }

    /// Reads what events there are within `timeout_ms` (-1: wait): Some(true) when one names
    /// the file, Some(false) when none does (or none came), None on an error.
    fn read_events(&self, timeout_ms: i32) -> Option<bool> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, owned by this frame.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
        if ready < 0 {
            return (std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
                .then_some(false);
        }
        if ready == 0 {
            return Some(false);
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer owned by this frame, at most its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return None;
        }
        let mut named = false;
        let mut at = 0usize;
        let header = std::mem::size_of::<libc::inotify_event>();
        while at + header <= n as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with the buffer's
            // alignment.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name_bytes = &buf[at + header..at + header + event.len as usize];
            let name = name_bytes.split(|&b| b == 0).next().unwrap_or_default();
            if name == self.name.as_bytes() {
                named = true;
            }
            at += header + event.len as usize;
        }
        Some(named)
    }
}
