//! A minimal classic-pcap writer (LINKTYPE_RAW, IPv4/TCP), so tests and `sample-traffic/` can
//! hold crafted captures whose every byte we chose: out of order, retransmitted, pipelined,
//! chunked, with a gap. Checksums are computed, so tcpdump and Wireshark read them too.

use std::net::SocketAddrV4;

/// One TCP segment to write.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ts_us: i64,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Vec<u8>,
}

/// The pcap file bytes of `frames`, in the order given.
pub fn pcap(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic (µs), version 2.4, zone 0, sigfigs 0, snaplen, LINKTYPE_RAW (101).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for f in frames {
        let pkt = ipv4_tcp(f);
        let (sec, usec) = (f.ts_us.div_euclid(1_000_000), f.ts_us.rem_euclid(1_000_000));
        out.extend_from_slice(&(sec as u32).to_le_bytes());
        out.extend_from_slice(&(usec as u32).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        out.extend_from_slice(&pkt);
    }
    out
}

/// One IPv4 packet carrying the frame's TCP segment.
pub fn ipv4_tcp(f: &Frame) -> Vec<u8> {
    let tcp_len = 20 + f.payload.len();
    let total = 20 + tcp_len;
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&f.src.ip().octets());
    ip[16..20].copy_from_slice(&f.dst.ip().octets());
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&f.src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&f.dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&f.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&f.ack.unwrap_or(0).to_be_bytes());
    tcp[12] = 5 << 4;
    let mut flags = 0u8;
    if f.fin {
        flags |= 0x01;
    }
    if f.syn {
        flags |= 0x02;
    }
    if f.rst {
        flags |= 0x04;
    }
    if !f.payload.is_empty() {
        flags |= 0x08;
    }
    if f.ack.is_some() {
        flags |= 0x10;
    }
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65_535u16.to_be_bytes());
    tcp.extend_from_slice(&f.payload);
    // Pseudo-header sum: addresses, protocol, TCP length.
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&f.src.ip().octets());
    pseudo.extend_from_slice(&f.dst.ip().octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let c = checksum(&tcp, sum(&pseudo));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

fn sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn checksum(b: &[u8], init: u32) -> u16 {
    let mut s = init + sum(b);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Builds the frames of one client connection: a handshake, then data in either direction,
/// with sequence numbers and ACKs kept as a real stack would.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
    /// Next sequence numbers of client and server.
    pub cseq: u32,
    pub sseq: u32,
    pub ts_us: i64,
    pub frames: Vec<Frame>,
}

impl Conversation {
    /// A connection with its three-way handshake; `isn`s chosen by the caller (to test wrap).
    pub fn open(
        client: SocketAddrV4,
        server: SocketAddrV4,
        cisn: u32,
        sisn: u32,
        ts_us: i64,
    ) -> Self {
        let mut c = Self {
            client,
            server,
            cseq: cisn,
            sseq: sisn,
            ts_us,
            frames: Vec::new(),
        };
        c.raw(true, b"", true, false, false, None);
        c.raw(false, b"", true, false, false, Some(cisn.wrapping_add(1)));
        c.cseq = cisn.wrapping_add(1);
        c.sseq = sisn.wrapping_add(1);
        c.raw(true, b"", false, false, false, Some(c.sseq));
        c
    }

    fn raw(
        &mut self,
        from_client: bool,
        payload: &[u8],
        syn: bool,
        fin: bool,
        rst: bool,
        ack: Option<u32>,
    ) {
        self.ts_us += 100;
        let (src, dst, seq) = if from_client {
            (self.client, self.server, self.cseq)
        } else {
            (self.server, self.client, self.sseq)
        };
        self.frames.push(Frame {
            ts_us: self.ts_us,
            src,
            dst,
            seq,
            ack,
            syn,
            fin,
            rst,
            payload: payload.to_vec(),
        });
    }

    /// Sends `data` from one side in segments of at most `mss` bytes.
    pub fn send(&mut self, from_client: bool, data: &[u8], mss: usize) {
        for chunk in data.chunks(mss.max(1)) {
            let ack = Some(if from_client { self.sseq } else { self.cseq });
            self.raw(from_client, chunk, false, false, false, ack);
            if from_client {
                self.cseq = self.cseq.wrapping_add(chunk.len() as u32);
            } else {
                self.sseq = self.sseq.wrapping_add(chunk.len() as u32);
            }
        }
    }

    /// Both sides close with FIN.
    pub fn close(&mut self) {
        let (c, s) = (self.cseq, self.sseq);
        self.raw(true, b"", false, true, false, Some(s));
        self.raw(false, b"", false, true, false, Some(c.wrapping_add(1)));
        self.cseq = c.wrapping_add(1);
        self.sseq = s.wrapping_add(1);
        self.raw(true, b"", false, false, false, Some(self.sseq));
    }

    /// The client resets the connection.
    pub fn reset(&mut self) {
        self.raw(true, b"", false, false, true, None);
    }
}
