//! The end client's address behind HTTP proxies: forwarded headers are believed only from
//! trusted proxies.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::restriction::parse_client_ip;

use crate::limits::{MAX_FORWARDED_HOPS as MAX_HOPS, MAX_FORWARDED_LEN};

/// The end client's address. The TCP `peer` is the client unless it is a trusted proxy; then
/// `X-Forwarded-For` is walked from the right (the hop the trusted proxy saw) past further
/// trusted proxies, else `X-Real-IP` is used. `None` when a trusted proxy forwarded something
/// unreadable: IP restrictions then fail closed.
pub fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    if let Some(list) = forwarded_for.filter(|l| !l.trim().is_empty()) {
        if list.len() > MAX_FORWARDED_LEN {
            return None;
        }
        let hops: Vec<&str> = list.rsplit(',').take(MAX_HOPS + 1).collect();
        if hops.len() > MAX_HOPS {
            return None;
        }
        let mut last = peer;
        for hop in hops {
            let ip = parse_client_ip(hop.trim())?.to_canonical();
            if !is_trusted(ip) {
                return Some(ip);
            }
            last = ip;
        }
        // Every hop is a trusted address: the leftmost is the client.
        return Some(last);
    }
    match real_ip {
        Some(text) if !text.trim().is_empty() => {
            parse_client_ip(text.trim()).map(|ip| ip.to_canonical())
        }
        _ => Some(peer),
    }
}
