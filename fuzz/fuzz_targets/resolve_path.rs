//! The path resolver never panics and never yields a path that could leave the web root;
//! origin normalization never panics and is idempotent.
#![no_main]

use intercomd::http::resolve_path;
use intercomd::origin::normalize_origin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(rel) = resolve_path(text) {
        assert!(!rel.is_empty(), "{text:?}");
        assert!(!rel.starts_with('/'), "{text:?} -> {rel:?}");
        assert!(!rel.contains(['\\', '\0', ':']), "{text:?} -> {rel:?}");
        assert!(
            rel.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."),
            "{text:?} -> {rel:?}"
        );
    }
    if let Some(origin) = normalize_origin(text) {
        assert_eq!(
            normalize_origin(&origin).as_deref(),
            Some(origin.as_str()),
            "{text:?}"
        );
    }
});
