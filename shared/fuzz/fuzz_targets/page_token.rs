//! Page tokens come from clients: opening any string must never panic, and
//! must never accept a token that was not sealed for the same scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::page::PageTokens;

fuzz_target!(|input: (&str, &str, &[u8])| {
    let (scope, token, cursor) = input;
    let tokens = PageTokens::new(b"fuzzing key");
    if let Ok(Some(opened)) = tokens.open(scope, token) {
        // Only a sealed token opens: sealing what we opened gives it back.
        assert_eq!(tokens.seal(scope, &opened), token);
    }
    // Real cursors are a UUID or a sequence number (16 bytes at most);
    // open() refuses tokens longer than any cursor needs.
    if cursor.len() <= 64 {
        let sealed = tokens.seal(scope, cursor);
        assert_eq!(tokens.open(scope, &sealed).ok().flatten().as_deref(), Some(cursor));
        let other = format!("{scope}x");
        assert!(tokens.open(&other, &sealed).is_err(), "a token works only for its own scope");
    }
});
