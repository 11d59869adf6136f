//! Adapters: implementations of the ports. `local` runs on this machine with no cloud account;
//! `azure` talks to the real services.

pub mod azure;
pub mod cached_control;
pub mod cached_run_history;
pub mod chaos;
pub mod counting;
pub mod counting_ports;
pub mod local;
mod ttl_cache;

/// `%XX` decoding of a URL path or segment (what servers and clients see encoded); invalid
/// sequences are kept as they are, and bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
