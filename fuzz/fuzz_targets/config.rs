//! Configuration loading on arbitrary text: `ringway::config::load_str` and, when it succeeds,
//! `Snapshot::build` (router compilation) must never panic; errors are fine but must name the
//! source and format without panicking. Non-UTF-8 inputs are skipped.
//!
//! Target URLs are resolved while loading. So that the fuzzer sends no DNS queries and its
//! results do not depend on the network, this binary answers name lookups itself (see
//! `getaddrinfo` below): `localhost` is 127.0.0.1, any other name does not exist. IP literals
//! never reach the resolver.

#![no_main]

use std::ffi::{c_char, c_int, CStr};
use std::mem::size_of;

use libfuzzer_sys::fuzz_target;

/// The variables `${VAR}` can refer to: those of the seed files, plus one empty one.
fn env(name: &str) -> Option<String> {
    let value = match name {
        "RINGWAY_LISTEN" | "LISTEN" => "127.0.0.1:8080",
        "RINGWAY_BACKEND" => "http://127.0.0.1:9000",
        "RINGWAY_WORKERS" => "2",
        "DEMO_ORIGIN" | "UPSTREAM" => "10.0.0.9:81",
        "EMPTY" => "",
        _ => return None,
    };
    Some(value.to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ringway::config::load_str(text, "fuzz.yaml", &env) {
        Ok(config) => {
            if let Err(e) = ringway::snapshot::Snapshot::build(config) {
                check_error(&e);
            }
        }
        Err(e) => check_error(&e),
    }
});

fn check_error(e: &ringway::config::ConfigError) {
    assert!(!e.errors.is_empty(), "an error without messages");
    let shown = e.to_string();
    assert!(!shown.is_empty());
}

/// Name resolution without the network: overrides the C library's `getaddrinfo` for this
/// binary (the standard library's lookups call it through the dynamic symbol, which the
/// executable's own definition takes precedence over).
///
/// # Safety
/// Called by the standard library with a NUL-terminated `node` and a valid `res`.
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    _service: *const c_char,
    _hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    if node.is_null() || res.is_null() {
        return libc::EAI_NONAME;
    }
    if !CStr::from_ptr(node)
        .to_bytes()
        .eq_ignore_ascii_case(b"localhost")
    {
        return libc::EAI_NONAME;
    }
    let sa = libc::calloc(1, size_of::<libc::sockaddr_in>()) as *mut libc::sockaddr_in;
    let ai = libc::calloc(1, size_of::<libc::addrinfo>()) as *mut libc::addrinfo;
    if sa.is_null() || ai.is_null() {
        libc::free(sa.cast());
        libc::free(ai.cast());
        return libc::EAI_MEMORY;
    }
    (*sa).sin_family = libc::AF_INET as libc::sa_family_t;
    (*sa).sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    (*ai).ai_family = libc::AF_INET;
    (*ai).ai_socktype = libc::SOCK_STREAM;
    (*ai).ai_protocol = libc::IPPROTO_TCP;
    (*ai).ai_addrlen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    (*ai).ai_addr = sa.cast();
    *res = ai;
    0
}

/// Frees what [`getaddrinfo`] above returned.
///
/// # Safety
/// `ai` is null or a list returned by this binary's `getaddrinfo`.
#[no_mangle]
pub unsafe extern "C" fn freeaddrinfo(mut ai: *mut libc::addrinfo) {
    while !ai.is_null() {
        let next = (*ai).ai_next;
        libc::free((*ai).ai_addr.cast());
        libc::free((*ai).ai_canonname.cast());
        libc::free(ai.cast());
        ai = next;
    }
}
