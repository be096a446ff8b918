//! Every valid and invalid PROXY header of the tests, whole, cut at every
//! split point and fed one byte at a time.

use super::*;

/// `source` and `destination` of a TCP header.
fn proxy(source: &str, destination: &str) -> Header {
    Header::Proxy {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    }
}

/// A version 2 header: VER_CMD, FAM, then `block` (addresses and TLVs).
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(ver_cmd);
    h.push(fam);
    h.extend_from_slice(&(block.len() as u16).to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// TCP over IPv4 from 192.0.2.1:56324 to 198.51.100.11:1080.
const V4_BLOCK: [u8; 12] = [192, 0, 2, 1, 198, 51, 100, 11, 0xDC, 0x04, 0x04, 0x38];

fn v6_block() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&[0x00, 0x50, 0x04, 0x38]);
    b
}

/// Valid headers and what they say.
fn valid() -> Vec<(Vec<u8>, Header)> {
    let mut tlvs = V4_BLOCK.to_vec();
    // ALPN "h2", a NOOP, a custom TLV, then the whole padded to the limit.
    tlvs.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00]);
    tlvs.extend_from_slice(&[0xE0, 0x00, 0x03, 1, 2, 3]);
    let mut longest = V4_BLOCK.to_vec();
    longest.resize(MAX_HEADER_LEN - 16, 0xAA);
    let mut unix = vec![b'/'; 216];
    unix[1] = b's';
    vec![
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.11 56324 1080\r\n".to_vec(),
            proxy("192.0.2.1:56324", "198.51.100.11:1080"),
        ),
        (
            b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(),
            proxy("0.0.0.0:0", "255.255.255.255:65535"),
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:DB8::2 80 1080\r\n".to_vec(),
            proxy("[2001:db8::1]:80", "[2001:db8::2]:1080"),
        ),
        (
            b"PROXY TCP6 ::ffff:127.0.0.5 ::1 4000 1080\r\n".to_vec(),
            proxy("[::ffff:127.0.0.5]:4000", "[::1]:1080"),
        ),
        (
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
            proxy(
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
                "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            ),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), Header::Unknown),
        (
            b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
            Header::Unknown,
        ),
        (b"PROXY UNKNOWN anything \x00\xff\r\n".to_vec(), Header::Unknown),
        (
            v2(0x21, 0x11, &V4_BLOCK),
            proxy("192.0.2.1:56324", "198.51.100.11:1080"),
        ),
        (
            v2(0x21, 0x21, &v6_block()),
            proxy("[2001:db8::1]:80", "[2001:db8::2]:1080"),
        ),
        (v2(0x21, 0x11, &tlvs), proxy("192.0.2.1:56324", "198.51.100.11:1080")),
        (
            v2(0x21, 0x11, &longest),
            proxy("192.0.2.1:56324", "198.51.100.11:1080"),
        ),
        // LOCAL: no address, or one that is ignored, of any family.
        (v2(0x20, 0x00, &[]), Header::Local),
        (v2(0x20, 0x11, &V4_BLOCK), Header::Local),
        (v2(0x20, 0x21, &[]), Header::Local),
        // PROXY for what socks5d does not use: the real endpoints.
        (v2(0x21, 0x00, &[]), Header::Unknown),
        (v2(0x21, 0x00, &V4_BLOCK), Header::Unknown),
        (v2(0x21, 0x12, &V4_BLOCK), Header::Unknown),
        (v2(0x21, 0x22, &v6_block()), Header::Unknown),
        (v2(0x21, 0x31, &unix), Header::Unknown),
        (v2(0x21, 0x32, &unix), Header::Unknown),
        (v2(0x21, 0x10, &[]), Header::Unknown),
    ]
}

/// Invalid inputs and why.
fn invalid() -> Vec<(Vec<u8>, Invalid)> {
    let mut too_long = V2_SIGNATURE.to_vec();
    too_long.extend_from_slice(&[0x21, 0x11]);
    too_long.extend_from_slice(&((MAX_HEADER_LEN - 16 + 1) as u16).to_be_bytes());
    let mut bad_sig = V2_SIGNATURE.to_vec();
    bad_sig[11] = b'X';
    let mut v1_long = b"PROXY UNKNOWN ".to_vec();
    v1_long.resize(V1_MAX_LEN, b'a');
    let mut v1_crlf_late = b"PROXY UNKNOWN ".to_vec();
    v1_crlf_late.resize(V1_MAX_LEN - 1, b'a');
    v1_crlf_late.extend_from_slice(b"\r\n");
    vec![
        // Not a header at all: a SOCKS greeting, HTTP, a lone CR.
        (vec![0x05, 0x01, 0x00], Invalid::Signature),
        (b"GET / HTTP/1.1\r\n".to_vec(), Invalid::Signature),
        (b"PROXI TCP4".to_vec(), Invalid::Signature),
        (b"PROXY\tTCP4".to_vec(), Invalid::Signature),
        (b"\r\n\r\n\x01".to_vec(), Invalid::Signature),
        (bad_sig, Invalid::Signature),
        // Version 1.
        (
            b"PROXY TCP5 192.0.2.1 198.51.100.11 1 2\r\n".to_vec(),
            Invalid::V1Protocol,
        ),
        (b"PROXY \r\n".to_vec(), Invalid::V1Protocol),
        (b"PROXY UNKNOWNX\r\n".to_vec(), Invalid::V1Protocol),
        (
            b"PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Protocol,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n".to_vec(),
            Invalid::V1Fields,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n".to_vec(),
            Invalid::V1Fields,
        ),
        (
            b"PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Fields,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n".to_vec(),
            Invalid::V1Fields,
        ),
        (b"PROXY TCP4\r\n".to_vec(), Invalid::V1Fields),
        (
            b"PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (
            b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (
            b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (
            b"PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(), Invalid::V1Address),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (
            b"PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (b"PROXY TCP6 [::1] ::1 1 2\r\n".to_vec(), Invalid::V1Address),
        (
            b"PROXY TCP4 +1.2.3.4 1.2.3.4 1 2\r\n".to_vec(),
            Invalid::V1Address,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +80 2\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 80 -1\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 80 0x50\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 80 100000\r\n".to_vec(),
            Invalid::V1Port,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n".to_vec(),
            Invalid::V1LineEnd,
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n".to_vec(),
            Invalid::V1LineEnd,
        ),
        (b"PROXY UNKNOWN\rX".to_vec(), Invalid::V1LineEnd),
        (v1_long, Invalid::V1TooLong),
        (v1_crlf_late, Invalid::V1TooLong),
        // Version 2.
        (v2(0x11, 0x11, &V4_BLOCK), Invalid::V2Version),
        (v2(0x31, 0x11, &V4_BLOCK), Invalid::V2Version),
        (v2(0x22, 0x11, &V4_BLOCK), Invalid::V2Command),
        (v2(0x2F, 0x11, &V4_BLOCK), Invalid::V2Command),
        (v2(0x21, 0x41, &V4_BLOCK), Invalid::V2Family),
        (v2(0x21, 0x13, &V4_BLOCK), Invalid::V2Family),
        (v2(0x20, 0xFF, &[]), Invalid::V2Family),
        (v2(0x21, 0x11, &V4_BLOCK[..11]), Invalid::V2AddressLength),
        (v2(0x21, 0x11, &[]), Invalid::V2AddressLength),
        (v2(0x21, 0x21, &V4_BLOCK), Invalid::V2AddressLength),
        (v2(0x21, 0x31, &V4_BLOCK), Invalid::V2AddressLength),
        (too_long, Invalid::V2TooLong),
    ]
}

/// Feeds `input` the way the worker does: the bytes received so far after
/// each piece, pieces ending at `cuts`; the first answer that is not
/// `Incomplete`.
fn fed(input: &[u8], cuts: impl IntoIterator<Item = usize>) -> Parse {
    for end in cuts.into_iter().chain([input.len()]) {
        let p = parse(&input[..end]);
        if p != Parse::Incomplete {
            return p;
        }
    }
    Parse::Incomplete
}

#[test]
fn valid_headers_whole_and_at_every_split_point() {
    for (bytes, header) in valid() {
        let whole = Parse::Complete {
            consumed: bytes.len(),
            header,
        };
        assert_eq!(
            parse(&bytes),
            whole,
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        for k in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..k]),
                Parse::Incomplete,
                "{k} of {} bytes of {:?}",
                bytes.len(),
                String::from_utf8_lossy(&bytes)
            );
            assert_eq!(fed(&bytes, [k]), whole, "split at {k}");
        }
        assert_eq!(fed(&bytes, 0..bytes.len()), whole, "byte by byte");
    }
}

#[test]
fn the_client_bytes_after_a_header_are_left_alone() {
    let greeting = [0x05, 0x01, 0x00];
    for (bytes, header) in valid() {
        let mut with = bytes.clone();
        with.extend_from_slice(&greeting);
        let want = Parse::Complete {
            consumed: bytes.len(),
            header,
        };
        for k in 0..=with.len() {
            let got = fed(&with, [k]);
            assert_eq!(got, want, "split at {k}");
        }
        // Even bytes that would make a bad header line are not looked at.
        let mut crlf = bytes.clone();
        crlf.extend_from_slice(b"\r\n\n\r");
        assert_eq!(parse(&crlf), want);
    }
}

#[test]
fn invalid_headers_whole_and_at_every_split_point() {
    for (bytes, why) in invalid() {
        let whole = Parse::Invalid(why);
        let shown = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(parse(&bytes), whole, "{shown:?}");
        for k in 0..bytes.len() {
            // A prefix is undecided, or already as wrong as the whole.
            let p = parse(&bytes[..k]);
            assert!(
                p == Parse::Incomplete || p == whole,
                "{k} bytes of {shown:?}: {p:?}, the whole is {whole:?}"
            );
            assert_eq!(fed(&bytes, [k]), whole, "split at {k} of {shown:?}");
        }
        assert_eq!(
            fed(&bytes, 0..bytes.len()),
            whole,
            "byte by byte: {shown:?}"
        );
        // More bytes change nothing.
        let mut more = bytes.clone();
        more.extend_from_slice(b" 1 2\r\n");
        assert_eq!(parse(&more), whole, "{shown:?} and more");
    }
}

#[test]
fn refusals_come_as_early_as_the_bytes_tell() {
    // A SOCKS greeting is refused from its first byte, not after a timeout.
    assert_eq!(parse(&[0x05]), Parse::Invalid(Invalid::Signature));
    assert_eq!(parse(b"PROXX"), Parse::Invalid(Invalid::Signature));
    // A version 2 header too long for socks5d is refused at its 16th byte,
    // before any of it is buffered.
    let (too_long, _) = invalid()
        .into_iter()
        .find(|(_, w)| *w == Invalid::V2TooLong)
        .unwrap();
    assert_eq!(too_long.len(), 16);
    // Version 1 without a CR LF is refused at 106 bytes: the line may not
    // end later.
    assert_eq!(
        parse(&[b"PROXY ".as_slice(), &[b'a'; 100]].concat()),
        Parse::Invalid(Invalid::V1TooLong)
    );
    assert_eq!(
        parse(&[b"PROXY ".as_slice(), &[b'a'; 99]].concat()),
        Parse::Incomplete
    );
}

#[test]
fn what_looks_like_a_header() {
    for (bytes, _) in valid() {
        assert!(starts_like_header(&bytes));
    }
    assert!(!starts_like_header(&[0x05, 0x01, 0x00]));
    assert!(!starts_like_header(b"PROXY"));
    assert!(!starts_like_header(&V2_SIGNATURE[..11]));
}

#[test]
fn emitted_headers_parse_back() {
    let mut out = [0u8; 52];
    for (src, dst) in [
        ("127.0.0.5:4000", "127.0.0.1:1080"),
        ("[2001:db8::7]:65535", "[::1]:1"),
        ("[::ffff:127.0.0.6]:9", "[::ffff:127.0.0.1]:1080"),
    ] {
        let (source, destination) = (src.parse().unwrap(), dst.parse().unwrap());
        let n = emit_v2(source, destination, &mut out);
        assert_eq!(n, if source.is_ipv4() { 28 } else { 52 });
        assert_eq!(
            parse(&out[..n]),
            Parse::Complete {
                consumed: n,
                header: Header::Proxy {
                    source,
                    destination
                }
            }
        );
    }
}

#[test]
fn reasons_are_log_tokens() {
    for (_, why) in invalid() {
        let s = why.to_string();
        assert!(
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{s:?}"
        );
    }
}
