//! Request fields come from clients: every validator must answer Ok or
//! INVALID_ARGUMENT for any input, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use auth_service::fields::{DisplayName, Email, NewPassword, Password, RefreshToken};
use shared::{Error, db::Timestamp, page::PageSize, token::KeySet, validate};

fn client_error<T>(result: Result<T, Error>) {
    if let Err(e) = result {
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
}

fuzz_target!(|input: (&str, &str, i32)| {
    let (a, b, n) = input;
    client_error(validate::uuid("id", a));
    client_error(validate::text("text", a, true, 200));
    client_error(validate::UserId::parse_optional("user_id", a));
    client_error(PageSize::parse(n));
    client_error(Email::parse("email", a));
    if let (Ok(email), Ok(password)) = (Email::parse("email", a), NewPassword::parse("password", b)) {
        client_error(password.not_email("password", &email));
    }
    client_error(Password::parse("password", b));
    client_error(RefreshToken::parse("refresh_token", b));
    client_error(DisplayName::parse("display_name", b));
    // A token from anyone: refused without a panic, whatever it holds.
    let keys = KeySet::new([("kid".to_owned(), &[7u8; 32][..])]);
    assert!(keys.verify(a, Timestamp::from_unix_micros(0)).is_err());
    let _ = shared::token::token_kid(b);
});
