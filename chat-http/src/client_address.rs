//! The client address of a request: the connection's peer, or, when the peer is a
//! trusted reverse proxy, the client that proxy forwarded for (`X-Forwarded-For` or
//! RFC 7239 `Forwarded: for=`).
//!
//! Forwarding headers are written by whoever sends the request, so they are believed
//! only from a configured proxy, and only as far as trusted proxies wrote them: each
//! proxy appends the address it received the request from, so the list is read from
//! the right, skipping trusted proxies, and the first other address is the client.
//! Everything to its left was written by the client itself and is ignored. A header that
//! cannot be read falls back to the peer address: never an error, never a guess.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName, header};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A block of IP addresses, such as `10.0.0.0/8` or `::1/128`; a single address is a
/// block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    /// The first address, with the host bits cleared.
    base: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The block of the addresses sharing the first `prefix` bits of `address`; `None`
    /// when `prefix` is longer than the address (32 bits for IPv4, 128 for IPv6).
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        // An IPv4 block written in IPv6 (`::ffff:10.0.0.0/104`) matches the IPv4
        // addresses that peers are compared as.
        let (address, prefix) = match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
                _ => (address, prefix),
            },
            IpAddr::V4(_) => (address, prefix),
        };
        let base = match address {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask_u32(prefix)?)),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask_u128(prefix)?)),
        };
        Some(Self { base, prefix })
    }

    /// Whether `address` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.base, address.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                mask_u32(self.prefix).is_some_and(|mask| ip.to_bits() & mask == base.to_bits())
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                mask_u128(self.prefix).is_some_and(|mask| ip.to_bits() & mask == base.to_bits())
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix: u8) -> Option<u32> {
    (prefix <= 32).then(|| u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

fn mask_u128(prefix: u8) -> Option<u128> {
    (prefix <= 128).then(|| u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0))
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Why a trusted-proxy entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an IP address or CIDR block like 10.0.0.0/8 or ::1/128: {reason}")]
pub struct InvalidNetwork {
    input: String,
    reason: &'static str,
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    /// Parses `10.0.0.0/8`, `::1/128`, or a single address (`192.0.2.1`, `::1`).
    /// Host bits after the prefix are cleared (`10.1.2.3/8` is `10.0.0.0/8`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| InvalidNetwork {
            input: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(refuse("empty entry"));
        }
        let (address, prefix) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| refuse("not an IPv4 or IPv6 address"))?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            // `u8::from_str` would take a leading `+`; only plain digits are a length.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| refuse("bad prefix length"))?
            }
            Some(_) => return Err(refuse("the prefix length must be a number")),
        };
        if prefix > width {
            return Err(refuse(if width == 32 {
                "an IPv4 prefix length is at most 32"
            } else {
                "an IPv6 prefix length is at most 128"
            }));
        }
        Self::new(address, prefix).ok_or_else(|| refuse("bad prefix length"))
    }
}

/// The reverse proxies whose forwarding headers are believed (`CHAT_TRUSTED_PROXIES`).
/// Empty by default: then the client address is always the connection's peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

impl FromStr for TrustedProxies {
    type Err = InvalidNetwork;

    /// Parses a comma-separated list of blocks and addresses (`10.0.0.0/8,::1/128`).
    /// A blank value trusts nothing, as an unset one does; an empty entry in a list is
    /// refused as a likely typo.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        text.split(',')
            .map(str::parse::<IpNetwork>)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }
}

impl TrustedProxies {
    /// Trusts the proxies in `networks`.
    pub fn new(networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        Self {
            networks: networks.into_iter().collect(),
        }
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(address))
    }

    /// The client address of a request received from `peer` with `headers`.
    ///
    /// From an untrusted peer: the peer, whatever the headers say. From a trusted one:
    /// the rightmost forwarded address that is not a trusted proxy (the leftmost when
    /// all are), taken from `Forwarded` or `X-Forwarded-For`. When a request carries
    /// both and they disagree, one was written by the client and nothing says which:
    /// the peer is used. So is it when the needed part of a header cannot be read.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let forwarded = headers
            .contains_key(header::FORWARDED)
            .then(|| self.rightmost_untrusted(forwarded_for(headers)));
        let x_forwarded_for = headers
            .contains_key(X_FORWARDED_FOR)
            .then(|| self.rightmost_untrusted(x_forwarded_for(headers)));
        let client = match (forwarded, x_forwarded_for) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => one,
            (Some(a), Some(b)) => a.filter(|a| Some(*a) == b),
        };
        client.unwrap_or(peer)
    }

    /// Walks `hops` (oldest first, `None` for one that cannot be read) from the right.
    fn rightmost_untrusted(&self, hops: Option<Vec<Option<IpAddr>>>) -> Option<IpAddr> {
        let mut leftmost_trusted = None;
        for hop in hops?.into_iter().rev() {
            let address = hop?.to_canonical();
            if !self.contains(address) {
                return Some(address);
            }
            leftmost_trusted = Some(address);
        }
        leftmost_trusted
    }
}

/// The hops of every `X-Forwarded-For` line, in order; `None` when a line is not text.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for line in headers.get_all(X_FORWARDED_FOR) {
        hops.extend(line.to_str().ok()?.split(',').map(node_address));
    }
    Some(hops)
}

/// The `for=` of each element of every `Forwarded` line (RFC 7239 §4), in order; an
/// element without `for` is a hop that cannot be read; `None` when the header does not
/// follow the grammar at all.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for line in headers.get_all(header::FORWARDED) {
        parse_forwarded(line.to_str().ok()?, &mut hops)?;
    }
    Some(hops)
}

/// Parses one `Forwarded` value: `1#forwarded-element`, each element
/// `forwarded-pair *( ";" forwarded-pair )`, each pair `token "=" ( token /
/// quoted-string )`.
fn parse_forwarded(value: &str, hops: &mut Vec<Option<IpAddr>>) -> Option<()> {
    let mut rest = value;
    // Per element: whether it had any pair, and its `for` (once at most, §4).
    let mut has_pairs = false;
    let mut node: Option<String> = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        let Some(first) = rest.chars().next() else {
            break;
        };
        if first == ',' || first == ';' {
            if first == ',' {
                finish_element(&mut has_pairs, &mut node, hops);
            }
            rest = &rest[1..];
            continue;
        }
        let name_end = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        let after = after.strip_prefix('=')?;
        if name.is_empty() {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => read_quoted(quoted)?,
            None => {
                // Unquoted, a port or an IPv6 address is not a token, but some
                // proxies write them so; the value still ends at a delimiter.
                let end = after
                    .find(|c: char| !(is_tchar(c) || matches!(c, ':' | '[' | ']')))
                    .unwrap_or(after.len());
                if end == 0 {
                    return None;
                }
                (after[..end].to_owned(), &after[end..])
            }
        };
        has_pairs = true;
        if name.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(value);
        }
        rest = after.trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with([',', ';'])) {
            return None;
        }
    }
    finish_element(&mut has_pairs, &mut node, hops);
    Some(())
}

fn finish_element(has_pairs: &mut bool, node: &mut Option<String>, hops: &mut Vec<Option<IpAddr>>) {
    // An empty list element (`a, , b`) is allowed by the list syntax and means nothing.
    if std::mem::take(has_pairs) {
        hops.push(node.take().as_deref().and_then(node_address));
    }
}

/// Reads a quoted-string after its opening quote: the unescaped content and what
/// follows the closing quote; `None` when it is not closed.
fn read_quoted(text: &str) -> Option<(String, &str)> {
    let mut content = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((content, &text[at + 1..])),
            '\\' => content.push(chars.next()?.1),
            _ => content.push(c),
        }
    }
    None
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The address of a forwarded node: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, with a numeric or obfuscated (`_x`) port.
/// `unknown`, an obfuscated name (`_proxy1`) or anything else is `None`.
fn node_address(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches([' ', '\t']);
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    // Only an obfuscated port is left to accept: a numeric one parsed above.
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            let host = IpAddr::V6(host.parse().ok()?);
            match after {
                "" => return Some(host),
                _ => (host, after.strip_prefix(':')?),
            }
        }
        None => {
            let (host, port) = text.split_once(':')?;
            (IpAddr::V4(host.parse().ok()?), port)
        }
    };
    let obfuscated_port = port.strip_prefix('_').is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    obfuscated_port.then_some(host)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::new(list.split(',').map(|entry| entry.parse().unwrap()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn networks_parse_and_match() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            (" 192.0.2.7 ", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1/128", "::1/128"),
            ("::1", "::1/128"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::/0", "::/0"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ];
        for (input, shown) in cases {
            let network: IpNetwork = input.parse().unwrap();
            assert_eq!(network.to_string(), shown, "{input}");
        }
        let ten: IpNetwork = "10.0.0.0/8".parse().unwrap();
        assert!(ten.contains(ip("10.255.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.1.1")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(!ten.contains(ip("::1")));
        let everything: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(ip("203.0.113.1")));
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        for bad in [
            "",
            " ",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0.0/0008",
            "10.0.0/8",
            "proxy.internal",
            "[::1]",
            "::1%eth0",
            "10.0.0.0/٨",
            "10.0.0.0/256",
            "10.0.0.0/99999999999",
        ] {
            let error = bad.parse::<IpNetwork>().unwrap_err();
            assert!(error.to_string().contains("CIDR"), "{bad}: {error}");
        }
    }

    #[test]
    fn lists_parse() {
        let list: TrustedProxies = "10.0.0.0/8, ::1/128,192.0.2.1".parse().unwrap();
        assert!(list.contains(ip("10.1.2.3")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("192.0.2.1")));
        assert!(!list.contains(ip("192.0.2.2")));
        assert!(!list.contains(ip("::2")));
        for blank in ["", " "] {
            assert!(blank.parse::<TrustedProxies>().unwrap().is_empty());
        }
        for bad in [
            "10.0.0.0/8,",
            ",10.0.0.0/8",
            "10.0.0.0/8,,::1",
            "10.0.0.0/8;::1",
        ] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes() {
        for (text, expected) in [
            ("192.0.2.60", Some("192.0.2.60")),
            (" 192.0.2.60 ", Some("192.0.2.60")),
            ("192.0.2.60:47011", Some("192.0.2.60")),
            ("192.0.2.60:_hidden", Some("192.0.2.60")),
            ("2001:db8:cafe::17", Some("2001:db8:cafe::17")),
            ("[2001:db8:cafe::17]", Some("2001:db8:cafe::17")),
            ("[2001:db8:cafe::17]:4711", Some("2001:db8:cafe::17")),
            ("[2001:db8:cafe::17]:_p", Some("2001:db8:cafe::17")),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
            ("[2001:db8::1", None),
            ("[2001:db8::1]x", None),
            ("[192.0.2.1]", None),
            ("[192.0.2.1]:_x", None),
            ("192.0.2.60:", None),
            ("192.0.2.60:port", None),
            ("192.0.2.60:_", None),
            ("192.0.2.60:99999", None),
        ] {
            assert_eq!(node_address(text), expected.map(ip), "{text:?}");
        }
    }

    #[test]
    fn forwarded_elements() {
        let parse = |value: &str| {
            let mut hops = Vec::new();
            parse_forwarded(value, &mut hops).map(|()| hops)
        };
        assert_eq!(
            parse(r#"for="_gazonk""#),
            Some(vec![None]),
            "an obfuscated node is a hop that cannot be read"
        );
        assert_eq!(
            parse(r#"For="[2001:db8:cafe::17]:4711""#),
            Some(vec![Some(ip("2001:db8:cafe::17"))])
        );
        assert_eq!(
            parse("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some(vec![Some(ip("192.0.2.60"))])
        );
        assert_eq!(
            parse(r#"for=192.0.2.43, for="[2001:db8:cafe::17]", for=unknown"#),
            Some(vec![
                Some(ip("192.0.2.43")),
                Some(ip("2001:db8:cafe::17")),
                None
            ])
        );
        assert_eq!(
            parse(r#"proto=https;host="a,b;c", , for = "x"#),
            None,
            "whitespace around = is not allowed"
        );
        assert_eq!(
            parse(r#"proto=https;host="a,b;c", ,FOR="192.0.2.1:80""#),
            Some(vec![None, Some(ip("192.0.2.1"))]),
            "an element without for cannot be read; empty elements are skipped"
        );
        assert_eq!(
            parse(r#"for="\1\9\2.0.2.1""#),
            Some(vec![Some(ip("192.0.2.1"))]),
            "quoted-pair"
        );
        for bad in [
            r#"for="192.0.2.1"#,
            "for",
            "for=",
            "=192.0.2.1",
            "for=192.0.2.1;for=192.0.2.2",
            r#"for="192.0.2.1"x"#,
            "for=192.0.2.1 by=x",
            "for=a/b",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn client_address_from_an_untrusted_peer_is_the_peer() {
        let trusted = proxies("10.0.0.0/8");
        let sent = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=203.0.113.1"),
        ]);
        assert_eq!(
            trusted.client_address(ip("198.51.100.9"), &sent),
            ip("198.51.100.9")
        );
        assert_eq!(
            TrustedProxies::default().client_address(ip("10.0.0.1"), &sent),
            ip("10.0.0.1")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:198.51.100.9"), &sent),
            ip("198.51.100.9"),
            "an IPv4-mapped peer is its IPv4 address"
        );
    }

    #[test]
    fn client_address_through_trusted_proxies() {
        let trusted = proxies("10.0.0.0/8,::1/128");
        let peer = ip("10.0.0.1");
        let cases: [(&[(&'static str, &str)], &str); 15] = [
            (&[], "10.0.0.1"),
            (&[("x-forwarded-for", "203.0.113.1")], "203.0.113.1"),
            (
                &[("x-forwarded-for", "6.6.6.6, 203.0.113.1")],
                "203.0.113.1",
            ),
            (
                &[("x-forwarded-for", "6.6.6.6, 203.0.113.1, 10.2.3.4,::1")],
                "203.0.113.1",
            ),
            (
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "203.0.113.1, 10.2.3.4"),
                ],
                "203.0.113.1",
            ),
            (&[("x-forwarded-for", "10.9.9.9, 10.2.3.4")], "10.9.9.9"),
            (
                &[("x-forwarded-for", "garbage, 203.0.113.1")],
                "203.0.113.1",
            ),
            (&[("x-forwarded-for", "203.0.113.1, garbage")], "10.0.0.1"),
            (&[("x-forwarded-for", "203.0.113.1,, 10.2.3.4")], "10.0.0.1"),
            (&[("x-forwarded-for", "")], "10.0.0.1"),
            (
                &[(
                    "forwarded",
                    r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.2.3.4"#,
                )],
                "2001:db8::1",
            ),
            (&[("forwarded", r#"for="[2001:db8::1"#)], "10.0.0.1"),
            (
                &[
                    ("forwarded", "for=203.0.113.1"),
                    ("x-forwarded-for", "203.0.113.1"),
                ],
                "203.0.113.1",
            ),
            // One of the two was written by the client, and nothing says which.
            (
                &[
                    ("forwarded", "for=203.0.113.66"),
                    ("x-forwarded-for", "203.0.113.1"),
                ],
                "10.0.0.1",
            ),
            (
                &[
                    ("forwarded", "for=unknown"),
                    ("x-forwarded-for", "203.0.113.1"),
                ],
                "10.0.0.1",
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(
                trusted.client_address(peer, &headers(pairs)),
                ip(expected),
                "{pairs:?}"
            );
        }
        // Not text at all.
        let mut binary = HeaderMap::new();
        binary.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.1\xff").unwrap(),
        );
        assert_eq!(trusted.client_address(peer, &binary), peer);
        // An IPv6 loopback proxy.
        assert_eq!(
            trusted.client_address(
                ip("::1"),
                &headers(&[("x-forwarded-for", "[2001:db8::5]:1234")])
            ),
            ip("2001:db8::5")
        );
    }
}
