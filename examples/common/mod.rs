//! What the examples share: where the services are and who signs in, from
//! the environment, with the local stack's addresses as defaults.

use docverify_client::{Clients, Session};

/// `DOCVERIFY_AUTH_URL` (default `http://127.0.0.1:50051`) and
/// `DOCVERIFY_DOCUMENT_URL` (default `http://127.0.0.1:50052`).
fn urls() -> (String, String) {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    (
        var("DOCVERIFY_AUTH_URL", "http://127.0.0.1:50051"),
        var("DOCVERIFY_DOCUMENT_URL", "http://127.0.0.1:50052"),
    )
}

/// Signs in as `<PREFIX>_EMAIL` / `<PREFIX>_PASSWORD` and returns the
/// clients of both services, authenticated by that session.
pub(crate) async fn sign_in(
    prefix: &str,
) -> Result<(Session, Clients), Box<dyn std::error::Error>> {
    let read = |what: &str| {
        let name = format!("{prefix}_{what}");
        std::env::var(&name).map_err(|_| format!("set {name}"))
    };
    let (auth_url, document_url) = urls();
    let auth = docverify_client::channel(&auth_url)?;
    let documents = docverify_client::channel(&document_url)?;
    let session = Session::login(auth.clone(), &read("EMAIL")?, &read("PASSWORD")?).await?;
    let clients = Clients::new(&session, auth, documents);
    Ok((session, clients))
}
