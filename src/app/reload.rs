//! Hot reload (issue 14): SIGHUP, or a change in the config file or the rules folder, loads the
//! config and the rules again and swaps what can be swapped for the next exchange:
//!
//! | reloads | how it is swapped |
//! |---|---|
//! | the rules (`rules:` and the files it names) | a new comparator in the pipeline's [`Stage`] |
//! | `redact:` and `publish.max_body_bytes` | a new redaction in the same stage (endpoint names follow), in the admin server (acknowledgements) and in the recorder (`record:`) |
//! | `compare.max_decoded_bytes`, `compare.max_differences` | the comparator's options |
//! | `shadow.methods`, `shadow.routes`, `shadow.sample` | the proxy's mirror policy |
//! | `gate:` | the admin server's gate defaults |
//!
//! The fleet view (`shadowdiff aggregate`) reloads the same way, with only what its admin
//! server reads: `gate:` and `redact:` (its [`Slots`] have no pipeline; rules are not loaded).
//!
//! Every other part takes a restart ([`restart_only_changes`] names them in a warning, and the
//! running values stay). Each slot is an [`ArcSwap`]: the comparison workers and the request path
//! load it without a lock, and a reload never waits for them.
//!
//! A change that does not load (a config problem, a bad rule) keeps everything in force, logs
//! each problem with its file and line, and counts `outcome="error"`; readiness is untouched.
//!
//! Watching: the folders holding the config file and the rules are watched (`notify`, not
//! recursive), and an event counts only when it names the config file, a `*.yaml`/`*.yml` of the
//! rules folder, the rules file, or `..data` — the symlink a Kubernetes ConfigMap volume swaps
//! when its content changes (the files are links through it, so the swap is the one event that
//! says they all changed). Events come in bursts (an editor's rename-and-write, the kubelet's
//! link swap): the reload runs once they have been quiet for [`QUIET`].

use crate::admin::{MetricFamily, MetricsSource};
use crate::compare::rules::RuleSet;
use crate::compare::{Comparator, CompareOptions};
use crate::config::{Config, ConfigErrors, ShadowConfig};
use crate::ingest::config::MirrorPolicy;
use crate::pipeline::Pipeline;
use crate::record::writer::Recorder;
use crate::redact::Redaction;
use crate::stats::GateConfig;
use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, never};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The metric every reload is counted in, label `outcome` (`ok`, `error`).
pub const RULES_RELOAD_TOTAL: &str = "shadowdiff_rules_reload_total";

/// How long file events must be quiet before a reload runs: a ConfigMap swap or an editor's save
/// is a burst of a few events within milliseconds.
pub const QUIET: Duration = Duration::from_millis(200);
/// A burst that never settles (a file rewritten without pause) is reloaded after this anyway.
const MAX_SETTLE: Duration = Duration::from_secs(2);

/// Where a reload gets its settings: the config as at start (file and flags), again.
pub struct ReloadSource {
    /// Reads the config file again and applies the command line over it, as at start.
    pub load: Box<dyn Fn() -> Result<Config, ConfigErrors> + Send>,
    /// The config file, watched with the rules (none: only the rules are watched).
    pub config_file: Option<PathBuf>,
    /// One message per SIGHUP ([`super::signals`]).
    pub hangups: Receiver<()>,
}

/// Reloads by outcome, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    ok: AtomicU64,
    error: AtomicU64,
}

impl MetricsSource for ReloadCounters {
    fn collect(&self) -> Vec<MetricFamily> {
        vec![
            MetricFamily::counter(
                RULES_RELOAD_TOTAL,
                "Reloads of the rules and the config's reloadable parts, by outcome",
            )
            .with(&[("outcome", "ok")], self.ok.load(Ordering::Relaxed) as f64)
            .with(
                &[("outcome", "error")],
                self.error.load(Ordering::Relaxed) as f64,
            ),
        ]
    }
}

/// The running sidecar's swappable parts. Whatever holds a setting that reloads holds it here
/// as a slot, never as a copy taken at start.
pub(super) struct Slots {
    /// The comparator and the events' redaction; none in the aggregator, which compares
    /// nothing (its reload neither loads nor watches rules).
    pub pipeline: Option<Arc<Pipeline>>,
    pub mirror: Option<Arc<ArcSwap<MirrorPolicy>>>,
    /// `record:`'s recorder, whose recordings are redacted as events are.
    pub recorder: Option<Arc<Recorder>>,
    pub gate: Arc<ArcSwap<GateConfig>>,
    /// The admin server's redaction (what a person types into an acknowledgement).
    pub redaction: Arc<ArcSwap<Redaction>>,
}

/// The reload thread: file work and rule compilation stay off the runtime and the workers.
pub(super) struct Reloader {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Starts watching and listening for SIGHUP; `running` is the config the sidecar started
    /// with (what restart-only changes are told against).
    pub fn start(
        src: ReloadSource,
        running: Config,
        slots: Slots,
        counters: Arc<ReloadCounters>,
    ) -> std::io::Result<Reloader> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        // One pending reload is enough: an event while one is pending changes nothing, since the
        // reload reads the files after the burst settles.
        let (changed, files) = crossbeam_channel::bounded::<()>(1);
        let mut watch = Watch::new(changed);
        let rules = slots.pipeline.as_ref().and(running.rules_path());
        watch.update(src.config_file.as_deref(), rules.as_deref());
        let mut w = Worker {
            load: src.load,
            config_file: src.config_file,
            running,
            watch,
            slots,
            counters,
        };
        let hangups = src.hangups;
        let thread = std::thread::Builder::new()
            .name("shadowdiff-reload".into())
            .spawn(move || w.run(hangups, files, stopped))?;
        Ok(Reloader {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread (after the reload it may be running).
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the reload thread panicked");
        }
    }
}

struct Worker {
    load: Box<dyn Fn() -> Result<Config, ConfigErrors> + Send>,
    config_file: Option<PathBuf>,
    running: Config,
    watch: Watch,
    slots: Slots,
    counters: Arc<ReloadCounters>,
}

impl Worker {
    fn run(&mut self, mut hangups: Receiver<()>, mut files: Receiver<()>, stop: Receiver<()>) {
        loop {
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(hangups) -> m => match m {
                    Ok(()) => self.reload("SIGHUP"),
                    // The signal task has ended (shutdown): nothing more comes.
                    Err(_) => hangups = never(),
                },
                recv(files) -> m => match m {
                    Ok(()) => {
                        settle(&files);
                        self.reload("file change");
                    }
                    Err(_) => files = never(),
                },
            }
        }
    }

    fn reload(&mut self, trigger: &'static str) {
        let compares = self.slots.pipeline.is_some();
        let next = (self.load)().and_then(|cfg| {
            let rules = if compares {
                Some(cfg.load_rules()?)
            } else {
                None
            };
            Ok((cfg, rules))
        });
        let (cfg, rules) = match next {
            Ok(n) => n,
            Err(e) => {
                self.counters.error.fetch_add(1, Ordering::Relaxed);
                for p in &e.0 {
                    tracing::error!(trigger, problem = %p, "reload refused: the rules and settings in force stay");
                }
                return;
            }
        };
        let restart_only = restart_only_changes(&self.running, &cfg);
        if !restart_only.is_empty() {
            tracing::warn!(
                trigger,
                sections = ?restart_only,
                "changed in the config file but applied only at a restart: the running values stay"
            );
        }
        let (n_rules, files) = rules
            .as_ref()
            .map(|r| (r.rules.len(), r.files.clone()))
            .unwrap_or_default();
        let generation = self.apply(&cfg, rules);
        self.counters.ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            trigger,
            generation,
            rules = n_rules,
            files = ?files,
            sample = cfg.shadow.sample,
            "reloaded: rules, redaction, sampling and gate thresholds apply from the next exchange"
        );
        let rules = self.slots.pipeline.as_ref().and(cfg.rules_path());
        self.watch
            .update(self.config_file.as_deref(), rules.as_deref());
    }

    /// Swaps every reloadable part; returns the pipeline stage's new generation (0 without
    /// a pipeline).
    fn apply(&self, cfg: &Config, rules: Option<RuleSet>) -> u64 {
        let redaction = Redaction::from_config(&cfg.redact, cfg.publish.max_body_bytes);
        // Every published string goes through the new redaction from here: the admin's first,
        // then the recorder's, then events and endpoint names with the stage.
        self.slots.redaction.store(Arc::new(redaction.clone()));
        if let Some(r) = &self.slots.recorder {
            r.set_redaction(&cfg.redact);
        }
        let mut generation = 0;
        if let (Some(pipeline), Some(rules)) = (&self.slots.pipeline, rules) {
            let comparator = Comparator::new(
                Arc::new(rules),
                CompareOptions {
                    max_decoded_bytes: cfg.compare.max_decoded_bytes,
                    max_differences: cfg.compare.max_differences,
                    // The descriptor set is read at load (`config::load_descriptors`); a reload
                    // reads it again with the rest of the file.
                    grpc: cfg.grpc.schema.clone(),
                },
            );
            generation = pipeline.swap_stage(comparator, redaction);
        }
        if let Some(m) = &self.slots.mirror {
            m.store(Arc::new(cfg.shadow.mirror_policy()));
        }
        self.slots.gate.store(Arc::new(cfg.gate.clone()));
        generation
    }
}

/// Waits until file events have been quiet for [`QUIET`] (at most [`MAX_SETTLE`]).
fn settle(files: &Receiver<()>) {
    let until = Instant::now() + MAX_SETTLE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match files.recv_timeout(QUIET.min(left)) {
            Ok(()) if !left.is_zero() => continue,
            _ => return,
        }
    }
}

/// The sections of `new` that differ from the running config and take a restart. Compared
/// through their `Debug` forms: every config type has one, and none has `PartialEq`.
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    fn shadow_rest(s: &ShadowConfig) -> String {
        // The mirror policy reloads; the rest of the section does not.
        let mut s = s.clone();
        s.methods.clear();
        s.routes.clear();
        s.sample = 0.0;
        format!("{s:?}")
    }
    let (a, b) = (running, new);
    let sections: [(&'static str, String, String); 15] = [
        (
            "listen",
            format!("{:?}", a.listen),
            format!("{:?}", b.listen),
        ),
        (
            "primary",
            format!("{:?}", a.primary),
            format!("{:?}", b.primary),
        ),
        (
            "candidate",
            format!("{:?}", a.candidate),
            format!("{:?}", b.candidate),
        ),
        (
            "secondary",
            format!("{:?}", a.secondary),
            format!("{:?}", b.secondary),
        ),
        ("admin", format!("{:?}", a.admin), format!("{:?}", b.admin)),
        (
            "instance",
            format!("{:?}", a.instance),
            format!("{:?}", b.instance),
        ),
        (
            "shadow (other than methods, routes, sample)",
            shadow_rest(&a.shadow),
            shadow_rest(&b.shadow),
        ),
        (
            "limits",
            format!("{:?}", a.limits),
            format!("{:?}", b.limits),
        ),
        (
            "compare.workers, queue, nice",
            format!("{:?}", (a.compare.workers, a.compare.queue, a.compare.nice)),
            format!("{:?}", (b.compare.workers, b.compare.queue, b.compare.nice)),
        ),
        (
            "grouping",
            format!("{:?}", a.grouping),
            format!("{:?}", b.grouping),
        ),
        ("sinks", format!("{:?}", a.sinks), format!("{:?}", b.sinks)),
        (
            "shutdown_grace",
            format!("{:?}", a.shutdown_grace),
            format!("{:?}", b.shutdown_grace),
        ),
        ("log", format!("{:?}", a.log), format!("{:?}", b.log)),
        ("stats", format!("{:?}", a.stats), format!("{:?}", b.stats)),
        ("noise", format!("{:?}", a.noise), format!("{:?}", b.noise)),
    ];
    sections
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(name, _, _)| name)
        .collect()
}

/// The paths whose events mean "reload".
#[derive(Debug, Default)]
struct Paths {
    /// The config file and a rules file.
    files: Vec<PathBuf>,
    /// A rules folder: any `*.yaml`/`*.yml` directly in it.
    dirs: Vec<PathBuf>,
}

impl Paths {
    fn relevant(&self, p: &Path) -> bool {
        let name = p.file_name().and_then(|n| n.to_str());
        if name == Some("..data") {
            return true; // a ConfigMap volume's content swap
        }
        let yaml = matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        self.files.iter().any(|f| f == p)
            || (yaml && p.parent().is_some_and(|d| self.dirs.iter().any(|x| x == d)))
    }
}

/// The folder watches; without a watcher (the platform refused one) only SIGHUP reloads.
struct Watch {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: BTreeSet<PathBuf>,
    paths: Arc<ArcSwap<Paths>>,
}

impl Watch {
    fn new(changed: Sender<()>) -> Self {
        let paths = Arc::new(ArcSwap::from_pointee(Paths::default()));
        let seen = paths.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            // Reading the files (the reload itself) must not trigger a reload; nor must a
            // metadata change alone.
            if matches!(
                ev.kind,
                EventKind::Access(_) | EventKind::Modify(notify::event::ModifyKind::Metadata(_))
            ) {
                return;
            }
            let paths = seen.load();
            if ev.paths.iter().any(|p| paths.relevant(p)) {
                let _ = changed.try_send(()); // full: a reload is pending already
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config and rules folders; SIGHUP still reloads");
                None
            }
        };
        Watch {
            watcher,
            dirs: BTreeSet::new(),
            paths,
        }
    }

    /// Watches the folders of `config` and `rules` (and no others).
    fn update(&mut self, config: Option<&Path>, rules: Option<&Path>) {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut paths = Paths::default();
        let mut dirs = BTreeSet::new();
        for (p, is_rules) in config
            .map(|c| (c, false))
            .into_iter()
            .chain(rules.map(|r| (r, true)))
        {
            let p = abs(p);
            if is_rules && p.is_dir() {
                dirs.insert(p.clone());
                paths.dirs.push(p);
            } else if let Some(d) = p.parent() {
                dirs.insert(d.to_path_buf());
                paths.files.push(p);
            }
        }
        self.paths.store(Arc::new(paths));
        let Some(w) = &mut self.watcher else { return };
        for d in self.dirs.difference(&dirs) {
            let _ = w.unwatch(d);
        }
        for d in dirs.difference(&self.dirs) {
            match w.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(folder = %d.display(), "watching for config and rules changes")
                }
                Err(e) => {
                    tracing::warn!(folder = %d.display(), error = %e, "cannot watch this folder; SIGHUP still reloads")
                }
            }
        }
        self.dirs = dirs;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn relevant_paths_are_the_config_the_rules_and_a_configmap_swap() {
        let p = Paths {
            files: vec![PathBuf::from("/etc/sd/shadowdiff.yaml")],
            dirs: vec![PathBuf::from("/etc/sd/rules")],
        };
        assert!(p.relevant(Path::new("/etc/sd/shadowdiff.yaml")));
        assert!(p.relevant(Path::new("/etc/sd/rules/orders.yaml")));
        assert!(p.relevant(Path::new("/etc/sd/rules/orders.yml")));
        assert!(p.relevant(Path::new("/etc/sd/rules/..data")));
        assert!(!p.relevant(Path::new("/etc/sd/shadowdiff-events.jsonl")));
        assert!(!p.relevant(Path::new("/etc/sd/rules/.orders.yaml.swp")));
        assert!(!p.relevant(Path::new("/etc/sd/other.yaml")));
        assert!(!p.relevant(Path::new("/etc/sd/rules/sub/x.yaml")));
    }

    #[test]
    fn only_restart_only_sections_are_reported() {
        let a = Config::default();
        let mut b = a.clone();
        b.shadow.sample = 0.5;
        b.shadow.methods.clear();
        b.gate.min_samples = 7;
        b.compare.max_differences = 3;
        assert!(restart_only_changes(&a, &b).is_empty());
        b.shadow.timeout = Duration::from_secs(1);
        b.compare.workers = 99;
        b.listen = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            restart_only_changes(&a, &b),
            [
                "listen",
                "shadow (other than methods, routes, sample)",
                "compare.workers, queue, nice"
            ]
        );
    }
}
