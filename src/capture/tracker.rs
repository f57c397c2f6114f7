//! The connection table: frames in, [`Finished`] exchanges out, every packet and exchange
//! counted. Pure (capture timestamps are the only clock), so a file and a live interface go
//! through the same code, and the fuzz target drives it directly.
//!
//! Bounds: each direction holds at most `max_stream_bytes` (beyond, the oldest hole becomes a
//! gap); all connections together at most `max_total_bytes` and `max_connections` (beyond, the
//! least recently active connection is ended, its waiting exchanges counted `evicted`); a
//! connection idle for `idle_timeout` is ended (`no_response` for what it still waits for).

use super::Finished;
use super::conn::Conn;
use super::counts::{Counts, Incomplete};
use super::packet::{self, Decoded, Defrag, Link};
use super::tcp::Segment;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Bounds and timeouts of a tracker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bodies kept up to this size; a larger one makes its exchange `body_too_large`.
    pub max_body_bytes: usize,
    /// Bytes held per direction of a connection (reassembly buffer).
    pub max_stream_bytes: usize,
    /// Bytes held by all connections together.
    pub max_total_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// How long (capture time) a hole may wait for a late segment before it becomes a gap.
    pub reorder_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_stream_bytes: 16 << 20,
            max_total_bytes: 512 << 20,
            max_connections: 65_536,
            idle_timeout: Duration::from_secs(60),
            reorder_window: Duration::from_secs(1),
        }
    }
}

/// Reassembles the HTTP exchanges of one server port.
#[derive(Debug)]
pub struct Tracker {
    port: u16,
    limits: Limits,
    conns: HashMap<(SocketAddr, SocketAddr), Conn>,
    memory: usize,
    next_id: u64,
    defrag: Defrag,
    counts: Counts,
    out: Vec<Finished>,
    /// How many of `out` are already counted.
    counted: usize,
    now_us: i64,
    last_sweep_us: i64,
}

impl Tracker {
    pub fn new(port: u16, limits: Limits) -> Self {
        Self {
            port,
            limits,
            conns: HashMap::new(),
            memory: 0,
            next_id: 1,
            defrag: Defrag::default(),
            counts: Counts::default(),
            out: Vec::new(),
            counted: 0,
            now_us: i64::MIN,
            last_sweep_us: i64::MIN,
        }
    }

    /// Feeds one captured frame. `wire_len`: its length on the wire (larger than `frame` when
    /// the snapshot length cut it).
    pub fn frame(&mut self, ts_us: i64, link: Option<Link>, frame: &[u8], wire_len: usize) {
        let p = &mut self.counts.packets;
        p.seen += 1;
        self.now_us = self.now_us.max(ts_us);
        // Idle connections end before this frame may need room for a new one.
        self.sweep();
        let p = &mut self.counts.packets;
        let Some(link) = link else {
            p.ignored += 1;
            return;
        };
        if wire_len > frame.len() {
            // Cut by the snapshot length: its bytes will be a gap, never guessed.
            p.truncated += 1;
            return;
        }
        match packet::decode(link, frame, ts_us, &mut self.defrag) {
            Decoded::Other => p.ignored += 1,
            Decoded::Malformed => p.malformed += 1,
            Decoded::Fragment => p.fragments += 1,
            Decoded::Tcp(t) => {
                let to_server = t.dst.port() == self.port;
                if !to_server && t.src.port() != self.port {
                    p.ignored += 1;
                } else {
                    p.tcp += 1;
                    let seg = Segment {
                        seq: t.seq,
                        ack: t.ack,
                        syn: t.syn,
                        fin: t.fin,
                        rst: t.rst,
                        payload: &t.payload,
                        ts_us,
                    };
                    let (client, server) = if to_server {
                        (t.src, t.dst)
                    } else {
                        (t.dst, t.src)
                    };
                    self.segment(client, server, to_server, &seg);
                }
            }
        }
    }

    fn segment(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        from_client: bool,
        seg: &Segment<'_>,
    ) {
        let key = (client, server);
        // A new SYN on a finished 4-tuple starts a new connection (port reuse).
        let reused = seg.syn
            && from_client
            && seg.ack.is_none()
            && self.conns.get(&key).is_some_and(|c| c.c2s.started());
        if reused {
            self.end(&key, Incomplete::NoResponse);
        }
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= self.limits.max_connections {
                self.evict_oldest();
            }
            let id = self.next_id;
            self.next_id += 1;
            self.conns.insert(
                key,
                Conn::new(id, client, server, self.limits.max_body_bytes),
            );
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let before = c.memory();
        let retrans = c.c2s.retransmitted + c.s2c.retransmitted;
        let reorder = i64::try_from(self.limits.reorder_window.as_micros()).unwrap_or(i64::MAX);
        c.push(
            from_client,
            seg,
            self.limits.max_stream_bytes,
            reorder,
            &mut self.out,
        );
        self.counts.packets.retransmitted += c.c2s.retransmitted + c.s2c.retransmitted - retrans;
        let after = c.memory();
        let closed = c.closed();
        self.memory = (self.memory + after).saturating_sub(before);
        if closed {
            self.end(&key, Incomplete::NoResponse);
        }
        while self.memory > self.limits.max_total_bytes && !self.conns.is_empty() {
            self.evict_oldest();
        }
        self.count_out();
    }

    /// Ends connections idle for longer than the idle timeout (checked once a second of capture
    /// time).
    fn sweep(&mut self) {
        if self.now_us.saturating_sub(self.last_sweep_us) < 1_000_000 {
            return;
        }
        self.last_sweep_us = self.now_us;
        let idle = i64::try_from(self.limits.idle_timeout.as_micros()).unwrap_or(i64::MAX);
        let stale: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| self.now_us.saturating_sub(c.last_ts_us) > idle)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.end(&k, Incomplete::NoResponse);
        }
        self.count_out();
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_ts_us)
            .map(|(k, _)| *k)
        {
            self.end(&k, Incomplete::Evicted);
        }
    }

    fn end(&mut self, key: &(SocketAddr, SocketAddr), why: Incomplete) {
        if let Some(mut c) = self.conns.remove(key) {
            self.memory = self.memory.saturating_sub(c.memory());
            c.finish(why, &mut self.out);
        }
    }

    fn count_out(&mut self) {
        for f in &self.out[self.counted..] {
            self.counts.exchanges.add(f.outcome);
        }
        self.counted = self.out.len();
    }

    /// The end of the capture: every connection is ended; what still waits is `no_response`.
    pub fn finish(&mut self) {
        let keys: Vec<_> = self.conns.keys().copied().collect();
        for k in keys {
            self.end(&k, Incomplete::NoResponse);
        }
        self.count_out();
    }

    /// Exchanges finished since the last call, in the order they finished.
    pub fn take(&mut self) -> Vec<Finished> {
        self.counted = 0;
        std::mem::take(&mut self.out)
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Kernel figures of a live capture (libpcap's statistics), set by the source.
    pub fn set_kernel(&mut self, received: u64, dropped: u64, if_dropped: u64) {
        let p = &mut self.counts.packets;
        (p.kernel_received, p.kernel_dropped, p.interface_dropped) =
            (received, dropped, if_dropped);
    }

    /// Bytes held by all connections (for tests of the bounds).
    pub fn memory(&self) -> usize {
        self.memory
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// IPv4 datagrams whose fragments were given up.
    pub fn fragments_dropped(&self) -> u64 {
        self.defrag.dropped
    }
}
