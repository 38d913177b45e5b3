//! Request fields come from clients: every validator must answer Ok or
//! INVALID_ARGUMENT for any input, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{Error, db::Timestamp, page::page_size, token::KeySet, validate};

fn client_error<T>(result: Result<T, Error>) {
    if let Err(e) = result {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
}

fuzz_target!(|input: (&str, &str, i32)| {
    let (a, b, n) = input;
    client_error(validate::uuid("id", a));
    client_error(validate::text("text", a, true, 200));
    client_error(page_size(n));
    client_error(auth_service::fields::Email::parse("email", a));
    client_error(auth_service::fields::NewPassword::parse("password", b, None));
    client_error(auth_service::fields::presented_password("password", b));
    client_error(auth_service::fields::display_name("display_name", b));
    // A token from anyone: refused without a panic, whatever it holds.
    let keys = KeySet::new([("kid".to_owned(), &[7u8; 32][..])]);
    assert!(keys.verify(a, Timestamp::from_unix_micros(0)).is_err());
    let _ = shared::token::token_kid(b);
});
