//! The one per-endpoint map: values keyed by endpoint name, sharded so that workers observing
//! different endpoints rarely contend, with a cap on the number of endpoints so memory and metric
//! labels stay bounded. [`crate::stats::Stats`] keeps its per-endpoint statistics in one; the
//! Kafka statistics publisher keeps its per-interval deltas in one.
//!
//! The cap counts *named* endpoints. The first `max_endpoints` distinct names each get their own
//! entry; every later name folds into [`OTHER_ENDPOINT`], which does not count against the cap.
//! That is the grouping's rule ([`crate::ingest::grouping::Grouper`]: `max_endpoints` automatic
//! endpoints, then `OTHER`), so a map built with `grouping.max_endpoints` holds every endpoint
//! the grouping names and never folds one the grouping kept. (Templates from the rules'
//! `endpoints:` are not counted by the grouper but are by the map: with many of them, the map can
//! fold some into `OTHER` — bounded by the rules file, as before.) A name that is `OTHER` itself
//! (the grouping's overflow) lands in the same entry, so overflow is counted once, in one place.
//!
//! Admission is exact: a name is admitted under the lock of its own shard, so two workers seeing
//! the same new endpoint cannot both take a slot, and no endpoint is folded while there is room.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Number of lock shards. A power of two well above the worker count keeps contention rare.
pub const SHARDS: usize = 32;

/// Where endpoints beyond the cap are counted: the one name, shared with the grouping.
pub const OTHER_ENDPOINT: &str = "OTHER";

/// Named endpoints tracked by default (`grouping.max_endpoints`), `OTHER` not included.
pub const DEFAULT_MAX_ENDPOINTS: usize = 200;

type Shard<T> = Mutex<HashMap<Box<str>, T>>;

/// Endpoint name → `T`, sharded and capped; see the module documentation.
pub struct EndpointMap<T> {
    hasher: RandomState,
    shards: Box<[Shard<T>]>,
    /// Named endpoints present (`OTHER` excluded); only changes under the lock of the shard that
    /// gains or loses the entry.
    named: AtomicUsize,
    max_endpoints: usize,
}

impl<T> std::fmt::Debug for EndpointMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointMap")
            .field("named", &self.named.load(Ordering::Relaxed))
            .field("max_endpoints", &self.max_endpoints)
            .finish()
    }
}

impl<T> EndpointMap<T> {
    /// A map that gives the first `max_endpoints` names their own entry and folds later ones into
    /// `OTHER`. `0` folds everything into `OTHER`.
    pub fn new(max_endpoints: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            named: AtomicUsize::new(0),
            max_endpoints,
        }
    }

    /// The cap on named endpoints (`OTHER` excluded).
    pub fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    fn shard(&self, endpoint: &str) -> &Shard<T> {
        &self.shards[(self.hasher.hash_one(endpoint) as usize) % self.shards.len()]
    }

    /// Runs `f` on the value of `endpoint` under its shard's lock. A new endpoint is admitted
    /// with `make()` while under the cap; past it, `f` runs on `OTHER`'s value (made if need be).
    pub fn with_endpoint<R>(
        &self,
        endpoint: &str,
        make: impl FnOnce() -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> R {
        let mut g = self.shard(endpoint).lock();
        // Hot path: almost every observation is of an endpoint already admitted.
        if let Some(v) = g.get_mut(endpoint) {
            return f(v);
        }
        if endpoint == OTHER_ENDPOINT || self.admit() {
            return f(g.entry(endpoint.into()).or_insert_with(make));
        }
        // `OTHER` may live in this very shard: parking_lot locks are not re-entrant.
        drop(g);
        let mut g = self.shard(OTHER_ENDPOINT).lock();
        f(g.entry(OTHER_ENDPOINT.into()).or_insert_with(make))
    }

    /// Takes a named slot if one is left.
    #[cold]
    fn admit(&self) -> bool {
        self.named
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_endpoints).then_some(n + 1)
            })
            .is_ok()
    }

    /// Visits every endpoint, one shard at a time under its lock (in no particular order).
    pub fn for_each(&self, mut f: impl FnMut(&str, &T)) {
        for s in self.shards.iter() {
            let g = s.lock();
            for (name, v) in g.iter() {
                f(name, v);
            }
        }
    }

    /// Takes every entry out, sorted by endpoint, and frees the named slots: the map starts
    /// over empty (one short lock per shard). For interval counters flushed periodically.
    pub fn take(&self) -> Vec<(Box<str>, T)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let mut g = s.lock();
            let named = g.len() - usize::from(g.contains_key(OTHER_ENDPOINT));
            out.extend(g.drain());
            // Under the shard's lock, as admissions are, so the count never runs below the
            // entries present.
            self.named.fetch_sub(named, Ordering::AcqRel);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Endpoints present, `OTHER` included once it is used.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Named endpoints present (`OTHER` excluded): at most [`Self::max_endpoints`].
    pub fn named(&self) -> usize {
        self.named.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
