#![allow(clippy::unwrap_used)]

use super::*;

fn seg(seq: u32, payload: &[u8]) -> Segment<'_> {
    Segment {
        seq,
        ack: None,
        syn: false,
        fin: false,
        rst: false,
        payload,
        ts_us: 0,
    }
}

fn syn(seq: u32) -> Segment<'static> {
    Segment {
        syn: true,
        ..seg(seq, b"")
    }
}

const BIG: usize = 1 << 20;

fn read_all(s: &mut Stream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r = s.readable().to_vec();
        s.consume(r.len());
        out.extend(r);
        if s.at_gap() {
            out.extend_from_slice(b"|GAP|");
            s.pass_gap();
        } else {
            return out;
        }
    }
}

#[test]
fn in_order_after_syn() {
    let mut s = Stream::default();
    s.push(&syn(100), BIG);
    s.push(&seg(101, b"hello "), BIG);
    s.push(&seg(107, b"world"), BIG);
    assert_eq!(read_all(&mut s), b"hello world");
}

#[test]
fn out_of_order_is_reordered() {
    let mut s = Stream::default();
    s.push(&syn(100), BIG);
    s.push(&seg(107, b"world"), BIG);
    assert_eq!(s.readable(), b"");
    s.push(&seg(101, b"hello "), BIG);
    assert_eq!(read_all(&mut s), b"hello world");
}

#[test]
fn retransmissions_and_overlaps_keep_the_first_copy() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    s.push(&seg(1, b"abcd"), BIG);
    s.push(&seg(1, b"abcd"), BIG);
    s.push(&seg(3, b"XXef"), BIG); // overlaps "cd": the first copy wins
    s.push(&seg(9, b"ij"), BIG);
    s.push(&seg(7, b"gh"), BIG);
    s.push(&seg(6, b"FGHI"), BIG); // overlaps both sides of a hole-free region
    assert_eq!(read_all(&mut s), b"abcdefghij");
    assert!(s.retransmitted >= 1);
}

#[test]
fn sequence_wrap_is_invisible() {
    let mut s = Stream::default();
    let isn = u32::MAX - 3;
    s.push(&syn(isn), BIG);
    s.push(&seg(isn.wrapping_add(1 + 4), b"5678"), BIG);
    s.push(&seg(isn.wrapping_add(1), b"1234"), BIG);
    s.push(&seg(isn.wrapping_add(9), b"9"), BIG);
    assert_eq!(read_all(&mut s), b"123456789");
}

#[test]
fn missing_syn_starts_at_the_first_segment() {
    let mut s = Stream::default();
    s.push(&seg(5000, b"GET / HTTP/1.1\r\n"), BIG);
    assert_eq!(read_all(&mut s), b"GET / HTTP/1.1\r\n");
}

#[test]
fn a_hole_becomes_a_gap_on_close_never_joined_bytes() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    s.push(&seg(1, b"ab"), BIG);
    s.push(&seg(5, b"ef"), BIG);
    assert_eq!(read_all(&mut s), b"ab");
    s.close();
    assert_eq!(read_all(&mut s), b"|GAP|ef");
}

#[test]
fn the_buffer_bound_turns_the_oldest_hole_into_a_gap() {
    let mut s = Stream::default();
    s.push(&syn(0), 8);
    s.push(&seg(3, b"cdefgh"), 8);
    assert_eq!(s.readable(), b"");
    s.push(&seg(9, b"ijk"), 8); // 9 bytes held > 8
    assert!(s.buffered() <= 9);
    assert_eq!(read_all(&mut s), b"|GAP|cdefghijk");
}

#[test]
fn a_hole_expires_after_the_reorder_window() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    let mut late = seg(3, b"cd");
    late.ts_us = 1_000;
    s.push(&late, BIG);
    s.expire_holes(1_500, 1_000);
    assert_eq!(s.readable(), b"");
    s.expire_holes(2_001, 1_000);
    assert_eq!(read_all(&mut s), b"|GAP|cd");
}

#[test]
fn fin_and_rst_finish_the_stream() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    let mut f = seg(1, b"x");
    f.fin = true;
    s.push(&f, BIG);
    assert!(s.finished());
    let mut r = Stream::default();
    r.push(&seg(10, b"y"), BIG);
    r.push(
        &Segment {
            rst: true,
            ..seg(11, b"")
        },
        BIG,
    );
    assert!(r.finished() && r.reset());
}

#[test]
fn a_fin_beyond_the_data_records_a_missing_tail() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    s.push(&seg(1, b"ab"), BIG);
    let mut f = seg(5, b"");
    f.fin = true;
    s.push(&f, BIG);
    assert!(!s.finished());
    s.close();
    assert_eq!(read_all(&mut s), b"ab|GAP|");
}

#[test]
fn metadata_follows_the_segments() {
    let mut s = Stream::default();
    s.push(&syn(0), BIG);
    let mut a = seg(1, b"abc");
    a.ts_us = 10;
    a.ack = Some(77);
    let mut b = seg(4, b"def");
    b.ts_us = 20;
    s.push(&a, BIG);
    s.push(&b, BIG);
    assert_eq!(s.meta_at(1).unwrap().ts_us, 10);
    assert_eq!(s.meta_at(0).unwrap().ack, Some(77));
    assert_eq!(s.meta_at(4).unwrap().ts_us, 20);
    assert_eq!(s.next_boundary_after(0), Some(3));
    s.consume(4);
    assert_eq!(s.meta_at(4).unwrap().ts_us, 20);
}
