//! From a captured frame to a TCP segment: link layers (Ethernet with VLANs, Linux cooked SLL
//! and SLL2, BSD loopback, raw IP), IPv4 (fragments reassembled here, bounded) and IPv6, with
//! etherparse for the headers. Pure.

use etherparse::{EtherType, NetSlice, SlicedPacket, TcpSlice};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// The link type of a capture (pcap's LINKTYPE/DLT numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (`any` interface).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host order.
    Null,
    /// OpenBSD loopback: the family in network order.
    Loop,
    /// Raw IP, version from the first nibble.
    Raw,
}

impl Link {
    /// From a pcap link type number; `None` for link types we do not decode.
    pub fn from_linktype(n: i32) -> Option<Link> {
        Some(match n {
            1 => Link::Ethernet,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            0 => Link::Null,
            108 => Link::Loop,
            // LINKTYPE_RAW, the two historical DLT_RAW values, LINKTYPE_IPV4 and _IPV6.
            101 | 12 | 14 | 228 | 229 => Link::Raw,
            _ => return None,
        })
    }
}

/// A decoded TCP segment with its endpoints.
#[derive(Debug)]
pub struct Tcp<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Cow<'a, [u8]>,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded<'a> {
    Tcp(Tcp<'a>),
    /// Not TCP (ARP, UDP, ICMP, ...).
    Other,
    /// An IPv4 fragment held until its datagram is whole.
    Fragment,
    /// Headers that do not parse.
    Malformed,
}

/// Decodes one frame. Fragments go through `defrag`, at capture time `ts_us`.
pub fn decode<'a>(link: Link, frame: &'a [u8], ts_us: i64, defrag: &mut Defrag) -> Decoded<'a> {
    let sliced = match link {
        Link::Ethernet if pppoe_ip(frame).is_some() => match pppoe_ip(frame) {
            Some(Some(ip)) => SlicedPacket::from_ip(ip),
            _ => return Decoded::Other,
        },
        Link::Ethernet => SlicedPacket::from_ethernet(frame),
        Link::LinuxSll => SlicedPacket::from_linux_sll(frame),
        Link::LinuxSll2 => match frame.get(..20) {
            Some(h) => SlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([h[0], h[1]])),
                &frame[20..],
            ),
            None => return Decoded::Malformed,
        },
        Link::Null | Link::Loop => match frame.get(4..) {
            Some(ip) => SlicedPacket::from_ip(ip),
            None => return Decoded::Malformed,
        },
        Link::Raw => SlicedPacket::from_ip(frame),
    };
    let Ok(p) = sliced else {
        return Decoded::Malformed;
    };
    let (src, dst, payload): (IpAddr, IpAddr, Cow<'a, [u8]>) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            if v4.payload().ip_number != etherparse::IpNumber::TCP {
                return Decoded::Other;
            }
            let (s, d) = (h.source_addr().into(), h.destination_addr().into());
            if h.is_fragmenting_payload() {
                let key = (h.source(), h.destination(), h.identification());
                let off = usize::from(h.fragments_offset().byte_offset());
                match defrag.add(key, off, h.more_fragments(), v4.payload().payload, ts_us) {
                    Some(whole) => (s, d, Cow::Owned(whole)),
                    None => return Decoded::Fragment,
                }
            } else {
                (s, d, Cow::Borrowed(v4.payload().payload))
            }
        }
        Some(NetSlice::Ipv6(v6)) => {
            if v6.payload().ip_number != etherparse::IpNumber::TCP || v6.is_payload_fragmented() {
                // IPv6 fragments of TCP are not seen in practice (PMTU discovery); counted as
                // not TCP.
                return Decoded::Other;
            }
            let h = v6.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                Cow::Borrowed(v6.payload().payload),
            )
        }
        _ => return Decoded::Other,
    };
    let tcp = match &payload {
        Cow::Borrowed(b) => TcpSlice::from_slice(b).map(|t| tcp_of(&t, Cow::Borrowed(t.payload()))),
        Cow::Owned(v) => {
            TcpSlice::from_slice(v).map(|t| tcp_of(&t, Cow::Owned(t.payload().to_vec())))
        }
    };
    match tcp {
        Ok(mut t) => {
            t.src.set_ip(src);
            t.dst.set_ip(dst);
            Decoded::Tcp(t)
        }
        Err(_) => Decoded::Malformed,
    }
}

/// The IP packet inside a PPPoE session frame (etherparse stops at its EtherType), after any
/// VLAN tags: `None` when the frame is not PPPoE, `Some(None)` when it carries no IP.
fn pppoe_ip(frame: &[u8]) -> Option<Option<&[u8]>> {
    let mut at = 12;
    loop {
        match frame.get(at..at + 2)? {
            [0x81, 0x00] | [0x88, 0xa8] | [0x91, 0x00] => at += 4,
            [0x88, 0x64] => break,
            _ => return None,
        }
    }
    // PPPoE header (6 bytes), then the PPP protocol: IPv4 0x0021, IPv6 0x0057.
    Some(match frame.get(at + 8..at + 10) {
        Some([0x00, 0x21]) | Some([0x00, 0x57]) => frame.get(at + 10..),
        _ => None,
    })
}

fn tcp_of<'a>(t: &TcpSlice<'_>, payload: Cow<'a, [u8]>) -> Tcp<'a> {
    let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    Tcp {
        src: SocketAddr::new(unspecified, t.source_port()),
        dst: SocketAddr::new(unspecified, t.destination_port()),
        seq: t.sequence_number(),
        ack: t.ack().then(|| t.acknowledgment_number()),
        syn: t.syn(),
        fin: t.fin(),
        rst: t.rst(),
        payload,
    }
}

type FragKey = ([u8; 4], [u8; 4], u16);

#[derive(Debug, Default)]
struct Datagram {
    first_ts_us: i64,
    parts: Vec<(usize, Vec<u8>)>,
    total: Option<usize>,
    bytes: usize,
}

/// IPv4 fragment reassembly, bounded: at most `MAX_DATAGRAMS` in progress and
/// `MAX_FRAGMENT_BYTES` held; the oldest is dropped first, and one older than
/// `FRAGMENT_TIMEOUT_US` is dropped (RFC 791's reassembly timer). Dropped datagrams are
/// counted; their TCP bytes become a gap in the stream.
#[derive(Debug, Default)]
pub struct Defrag {
    open: HashMap<FragKey, Datagram>,
    held: usize,
    /// Datagrams given up (timeout, bounds, inconsistent fragments).
    pub dropped: u64,
}

const MAX_DATAGRAMS: usize = 1024;
const MAX_FRAGMENT_BYTES: usize = 16 << 20;
const FRAGMENT_TIMEOUT_US: i64 = 30_000_000;
/// Largest IPv4 datagram payload.
const MAX_DATAGRAM: usize = 65_535;

impl Defrag {
    fn add(
        &mut self,
        key: FragKey,
        off: usize,
        more: bool,
        data: &[u8],
        ts_us: i64,
    ) -> Option<Vec<u8>> {
        self.expire(ts_us);
        if off + data.len() > MAX_DATAGRAM {
            self.dropped += 1;
            return None;
        }
        while self.open.len() >= MAX_DATAGRAMS || self.held + data.len() > MAX_FRAGMENT_BYTES {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, d)| d.first_ts_us)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.remove(&oldest);
            self.dropped += 1;
        }
        let d = self.open.entry(key).or_insert_with(|| Datagram {
            first_ts_us: ts_us,
            ..Datagram::default()
        });
        if !more {
            d.total = Some(off + data.len());
        }
        d.parts.push((off, data.to_vec()));
        d.bytes += data.len();
        self.held += data.len();
        let total = d.total?;
        // Whole when the parts, sorted by offset, cover 0..total without a hole.
        d.parts.sort_by_key(|(o, _)| *o);
        let mut covered = 0;
        for (o, p) in &d.parts {
            if *o > covered {
                return None;
            }
            covered = covered.max(o + p.len());
        }
        if covered < total {
            return None;
        }
        let d = self.remove(&key)?;
        let mut whole = vec![0u8; total];
        // Later fragments overwrite earlier ones where they overlap; every byte is covered.
        for (o, p) in &d.parts {
            let end = (o + p.len()).min(total);
            whole[*o..end].copy_from_slice(&p[..end - o]);
        }
        Some(whole)
    }

    fn remove(&mut self, key: &FragKey) -> Option<Datagram> {
        let d = self.open.remove(key)?;
        self.held -= d.bytes;
        Some(d)
    }

    fn expire(&mut self, now_us: i64) {
        let old: Vec<FragKey> = self
            .open
            .iter()
            .filter(|(_, d)| now_us.saturating_sub(d.first_ts_us) > FRAGMENT_TIMEOUT_US)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(&k);
            self.dropped += 1;
        }
    }
}
