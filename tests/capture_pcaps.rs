//! Every public capture in `../shared/testdata/pcap/INVENTORY.txt` reassembles to its expected
//! exchanges, or the table says why an exchange is not complete. The captures are read from
//! the shared folder beside the project (never copied in); without it the test says so and
//! passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shadowdiff::capture::source::{Input, run};
use shadowdiff::capture::{Counts, Finished, Limits, Outcome};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// (file, server port, complete, incomplete by reason, unparsable, why it is not all complete).
type Row = (
    &'static str,
    u16,
    u64,
    &'static [(&'static str, u64)],
    u64,
    &'static str,
);

const TABLE: &[Row] = &[
    (
        "pcapplusplus/four_ipv6_http_streams.pcap",
        80,
        9,
        &[],
        0,
        "IPv6, keep-alive, one chunked response",
    ),
    (
        "pcapplusplus/one_http_stream_fin.pcap",
        80,
        1,
        &[],
        0,
        "closed by FIN",
    ),
    (
        "pcapplusplus/one_http_stream_rst.pcap",
        80,
        1,
        &[],
        0,
        "PPPoE inside two VLAN tags; closed by RST after the answer",
    ),
    ("pcapplusplus/one_ipv6_http_stream.pcap", 80, 3, &[], 0, ""),
    (
        "pcapplusplus/three_http_streams.pcap",
        80,
        3,
        &[],
        0,
        "three interleaved connections",
    ),
    (
        "peafowl-tcp-resegment/http.pcap",
        80,
        2,
        &[],
        0,
        "the baseline of the family",
    ),
    (
        "peafowl-tcp-resegment/http_ip_fragmented.pcap",
        80,
        2,
        &[],
        0,
        "IPv4 fragments reassembled",
    ),
    (
        "peafowl-tcp-resegment/http_ip_fragmented_out_of_order.pcap",
        80,
        2,
        &[],
        0,
        "fragments out of order",
    ),
    (
        "peafowl-tcp-resegment/http_no_syn.pcap",
        80,
        2,
        &[],
        0,
        "the stream starts at the first segment seen",
    ),
    (
        "peafowl-tcp-resegment/http_no_syn_synack_ack.pcap",
        80,
        1,
        &[],
        1,
        "the crafted file turned the server's first bare ACK into a 6-byte segment of zeros at the \
         response's first sequence number; the first copy of a byte wins (as in the client's \
         kernel), so the 401 response starts with NULs and is unparsable, never guessed",
    ),
    (
        "peafowl-tcp-resegment/http_out_of_order_1.pcap",
        80,
        2,
        &[],
        0,
        "segments reordered (tshark finds 0 requests)",
    ),
    (
        "peafowl-tcp-resegment/http_out_of_order_2.pcap",
        80,
        2,
        &[],
        0,
        "segments reordered",
    ),
    (
        "peafowl-tcp-resegment/http_seq_num_wrapping.pcap",
        80,
        2,
        &[],
        0,
        "sequence numbers wrap",
    ),
    (
        "peafowl-tcp-resegment/http_seq_num_wrapping_out_of_order.pcap",
        80,
        2,
        &[],
        0,
        "wrap and reordering",
    ),
    (
        "recorded/json-server-pair-keepalive.pcapng",
        3100,
        12,
        &[],
        0,
        "legacy side: gzip + chunked",
    ),
    (
        "recorded/json-server-pair-keepalive.pcapng",
        3200,
        12,
        &[],
        0,
        "candidate side",
    ),
    (
        "recorded/json-server-pair-pipelined.pcapng",
        3100,
        6,
        &[],
        0,
        "six requests in one segment",
    ),
    (
        "recorded/json-server-pair-pipelined.pcapng",
        3200,
        6,
        &[],
        0,
        "six requests in one segment",
    ),
    (
        "tcpreplay/test.pcap",
        80,
        9,
        &[],
        0,
        "IPv4 and IPv6 among DNS/ICMP/MPLS/VLAN noise",
    ),
    (
        "zeek/http_100-continue.pcap",
        80,
        1,
        &[],
        0,
        "the 100 Continue is interim, the chunked 200 is paired",
    ),
    (
        "zeek/http_1000-requests-one-dropped-response.pcap.gz",
        80,
        999,
        &[("gap", 1)],
        0,
        "the first response's head was never captured: request 1 is `gap`, and the ACK of \
         request 2 proves the next response is its own, so the other 999 pair without a shift",
    ),
    (
        "zeek/http_261_variant-01-chunk_2pow64_overflow.pcap",
        80,
        0,
        &[],
        1,
        "a chunk size of 2^64 is invalid framing (the capture holds only the request)",
    ),
    (
        "zeek/http_261_variant-04-te_cl_desync.pcap",
        80,
        0,
        &[("no_response", 2)],
        0,
        "request-only capture; chunked wins over Content-Length (RFC 9112 §6.3), so the smuggled \
         request is read as the second request, as a conforming server reads it",
    ),
    (
        "zeek/http_261_variant-10-multi_value_te.pcap",
        80,
        0,
        &[],
        1,
        "a request whose last transfer coding is not chunked has no determinable length \
         (RFC 9112 §6.3: the server answers 400)",
    ),
    (
        "zeek/http_docker-http-upgrade.pcap",
        2375,
        6,
        &[],
        0,
        "101 ends HTTP on the attach connection",
    ),
    (
        "zeek/http_get-gzip.pcap",
        80,
        1,
        &[],
        0,
        "FIN retransmitted",
    ),
    (
        "zeek/http_http-body-match.pcap",
        80,
        10,
        &[],
        0,
        "100-continue, chunked + gzip request bodies",
    ),
    (
        "zeek/http_http-desync-request-response-5.pcap",
        8080,
        5,
        &[("no_request", 2)],
        0,
        "the server answers the first GET three times: the extra two started before the next \
         request was sent (its ACK says so), so they are `no_request` and nothing shifts",
    ),
    (
        "zeek/http_m57-long-49583-80.pcap",
        80,
        3,
        &[],
        0,
        "83 retransmissions and dup ACKs",
    ),
    (
        "zeek/http_methods.pcap",
        80,
        9,
        &[],
        40,
        "40 of the 49 connections send deliberately malformed request lines (`OPTIONSHTTP/1.1`, \
         `GET /HTTP/1.1`, ...), which the server answers 400/403/405",
    ),
    ("zeek/http_multipart.pcap", 80, 1, &[], 0, ""),
    ("zeek/http_pipelined-requests.pcap", 80, 5, &[], 0, ""),
    ("zeek/http_post.pcap", 80, 1, &[], 0, "one retransmission"),
    (
        "zeek/http_query-method.pcap",
        80,
        1,
        &[],
        0,
        "the QUERY method (tshark does not see it)",
    ),
    (
        "zeek/http_smuggle-http-request.pcap",
        8080,
        2,
        &[],
        0,
        "the smuggled request is a second request",
    ),
    (
        "zeek/http_vnd.ms-cab-compressed-multi-conn.pcap",
        80,
        5,
        &[],
        0,
        "50 retransmissions",
    ),
    (
        "zeek/http_zero-length-bodies-with-drops.pcap",
        80,
        7,
        &[("no_request", 1)],
        0,
        "a request segment was never captured; its response arrived before the next request was \
         sent, so it is `no_request` and the 7 others pair (tshark: 7 requests, 8 responses)",
    ),
    (
        "zeek/tcp_handshake-reorder.pcap",
        80,
        1,
        &[],
        0,
        "handshake packets reordered",
    ),
];

pub fn shared() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/pcap");
    root.join("INVENTORY.txt").exists().then_some(root)
}

fn capture(file: &std::path::Path, port: u16) -> (Counts, Vec<Finished>) {
    let mut out = Vec::new();
    let c = run(
        &Input::File(file.to_path_buf()),
        port,
        Limits::default(),
        &AtomicBool::new(false),
        None,
        |f| out.push(f),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (c, out)
}

#[test]
fn every_public_capture_reassembles_to_its_expected_exchanges() {
    let Some(root) = shared() else {
        eprintln!("SKIP: ../shared/testdata/pcap is absent; the public captures are not checked");
        return;
    };
    // Every file of the inventory is in the table.
    let inventory = std::fs::read_to_string(root.join("INVENTORY.txt")).unwrap();
    for l in inventory
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f = l.split(" | ").next().unwrap().trim_start_matches("./");
        assert!(
            TABLE.iter().any(|r| r.0 == f),
            "{f} is in INVENTORY.txt but not in the table"
        );
    }
    let mut wrong = Vec::new();
    for (file, port, complete, incomplete, unparsable, why) in TABLE {
        let (c, _) = capture(&root.join(file), *port);
        let e = &c.exchanges;
        let got_incomplete: Vec<(&str, u64)> = e
            .incomplete
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
            .collect();
        let line = format!(
            "{file} (port {port}): {} complete, incomplete {:?}, {} unparsable",
            e.complete, got_incomplete, e.unparsable
        );
        println!(
            "{line}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(" — {why}")
            }
        );
        if e.complete != *complete || got_incomplete != *incomplete || e.unparsable != *unparsable {
            wrong.push(format!(
                "{line}; expected {complete} complete, incomplete {incomplete:?}, {unparsable} unparsable"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "captures that differ:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn reassembled_bytes_match_the_published_stream_text() {
    let Some(root) = shared() else {
        eprintln!("SKIP: ../shared/testdata/pcap is absent");
        return;
    };
    // PcapPlusPlus's expected output of its TcpReassembly test holds both directions' bytes;
    // every header line and body we read must appear in it.
    for (pcap, text) in [
        ("one_http_stream_fin.pcap", "one_http_stream_fin_output.txt"),
        ("one_ipv6_http_stream.pcap", "one_ipv6_http_stream.txt"),
    ] {
        let expected = std::fs::read(root.join("pcapplusplus").join(text)).unwrap();
        let (_, out) = capture(&root.join("pcapplusplus").join(pcap), 80);
        assert!(!out.is_empty());
        for f in out {
            let x = f.exchange.expect("complete");
            let start = format!("{} {}", x.request.method, x.request.path);
            assert!(contains(&expected, start.as_bytes()), "{pcap}: {start}");
            assert!(
                contains(&expected, &x.response.body),
                "{pcap}: the body of {start}"
            );
            for (n, v) in &x.response.headers {
                let mut line = n.clone().into_bytes();
                line.extend_from_slice(b": ");
                line.extend_from_slice(v);
                assert!(
                    contains(&expected.to_ascii_lowercase(), &line.to_ascii_lowercase()),
                    "{pcap}: header {n}"
                );
            }
        }
    }
}

#[test]
fn pairing_gzip_chunked_bodies_and_latency_in_the_json_server_recording() {
    let Some(root) = shared() else {
        eprintln!("SKIP: ../shared/testdata/pcap is absent");
        return;
    };
    let file = root.join("recorded/json-server-pair-keepalive.pcapng");
    let (_, legacy) = capture(&file, 3100);
    let (_, candidate) = capture(&file, 3200);
    let lx: Vec<_> = legacy.into_iter().map(|f| f.exchange.unwrap()).collect();
    let cx: Vec<_> = candidate.into_iter().map(|f| f.exchange.unwrap()).collect();
    // The same request sequence on both sides, in order.
    for (l, c) in lx.iter().zip(&cx) {
        assert_eq!(
            (&l.request.method, &l.request.path),
            (&c.request.method, &c.request.path)
        );
        assert!(l.times.response_last_us >= l.times.request_first_us);
    }
    // Legacy answers large bodies gzip + chunked: decoded from chunked, still gzip.
    let gz = lx
        .iter()
        .find(|x| {
            x.response
                .headers
                .iter()
                .any(|(n, v)| n == "content-encoding" && v == b"gzip")
        })
        .expect("a gzip answer");
    assert_eq!(
        &gz.response.body[..2],
        &[0x1f, 0x8b],
        "chunked removed, gzip kept"
    );
    assert!(gz.primary_latency() > std::time::Duration::ZERO);
}

#[test]
fn the_dropped_response_leaves_every_other_pair_in_place() {
    let Some(root) = shared() else {
        eprintln!("SKIP: ../shared/testdata/pcap is absent");
        return;
    };
    let (_, out) = capture(
        &root.join("zeek/http_1000-requests-one-dropped-response.pcap.gz"),
        80,
    );
    assert_eq!(
        out[0].outcome,
        Outcome::Incomplete(shadowdiff::capture::Incomplete::Gap)
    );
    // Each complete exchange's response started after its request (no shifted pair).
    for f in &out[1..] {
        let x = f.exchange.as_ref().unwrap();
        assert!(
            x.times.response_first_us >= x.times.request_last_us,
            "{x:?}"
        );
        assert_eq!(x.response.status, 200);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
