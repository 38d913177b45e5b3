use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::*;
use shared::proto::auth::v1 as pb;

/// The service's own time (its clock stands still unless the test moves
/// it), so that a bound such as "expired 31 s ago" holds exactly.
fn now(app: &TestApp) -> i64 {
    app.clock.now().unix_seconds()
}

fn claims(app: &TestApp, sub: &str) -> Value {
    let now = now(app);
    json!({
        "iss": "docverify-auth", "aud": "docverify", "sub": sub, "email": "m@example.com",
        "roles": ["user"], "iat": now, "nbf": now, "exp": now + 600, "jti": "j", "tgen": 0
    })
}

fn header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    h
}

fn sign(key: &EncodingKey, header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// A token whose header is given verbatim, signed correctly with `key`: what
/// is refused is the header's content, not the signature.
fn signed_raw(key: &EncodingKey, header: Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::EdDSA).unwrap();
    format!("{message}.{signature}")
}

/// A token whose header and payload are given verbatim, with any signature.
fn raw(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

async fn inactive(app: &TestApp, token: &str, why: &str) {
    let status = app.me(token).await.expect_err(why);
    assert_eq!(status.code(), Code::Unauthenticated, "{why}: {status:?}");
    assert_eq!(
        status.message(),
        "invalid or expired access token",
        "{why}: nothing is learned from the message"
    );
    let v = app
        .auth()
        .validate_token(pb::ValidateTokenRequest {
            access_token: token.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.active, "{why}: ValidateToken must say inactive");
}

#[tokio::test]
async fn a_well_formed_token_from_our_key_is_accepted() {
    let app = spawn_app().await;
    let user = app.register("mia@example.com").await;
    let token = sign(&app.key.key, &header(&app.key.kid), &claims(&app, &user.id));
    assert_eq!(app.me(&token).await.unwrap().id, user.id);
    let v = app
        .auth()
        .validate_token(pb::ValidateTokenRequest {
            access_token: token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.active);
    assert_eq!(v.user_id, user.id);
    // The token's roles: a role change bumps the generation, so a token
    // with the current generation carries the current roles.
    assert_eq!(v.roles, vec!["user"]);
    assert!(v.expires_at.is_some());
}

#[tokio::test]
async fn forged_and_broken_tokens_are_refused() {
    let app = spawn_app().await;
    let user = app.register("ned@example.com").await;
    let kid = app.key.kid.clone();
    let good = claims(&app, &user.id);
    let signed = |h: &Header, c: &Value| sign(&app.key.key, h, c);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };

    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            raw(
                json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
                &good,
                b"",
            ),
        ),
        (
            "RS256 header",
            raw(
                json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
                &good,
                &[7; 256],
            ),
        ),
        (
            "ES256 header",
            raw(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
                &good,
                &[7; 64],
            ),
        ),
        ("unknown kid", signed(&header("no-such-key"), &good)),
        ("path kid", signed(&header("../../etc/passwd"), &good)),
        ("sql kid", signed(&header("x' OR '1'='1"), &good)),
        ("long kid", signed(&header(&"k".repeat(4000)), &good)),
        (
            "other key",
            sign(&TestKey::generate().key, &header(&kid), &good),
        ),
        (
            "expired",
            signed(&header(&kid), &with(&|c| c["exp"] = json!(now(&app) - 31))),
        ),
        (
            "not yet valid",
            signed(&header(&kid), &with(&|c| c["nbf"] = json!(now(&app) + 120))),
        ),
        (
            "issued in the future",
            signed(&header(&kid), &with(&|c| c["iat"] = json!(now(&app) + 120))),
        ),
        (
            "wrong audience",
            signed(&header(&kid), &with(&|c| c["aud"] = json!("someone-else"))),
        ),
        (
            "no audience",
            signed(
                &header(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
        ),
        (
            "wrong issuer",
            signed(&header(&kid), &with(&|c| c["iss"] = json!("evil"))),
        ),
        (
            "no issuer",
            signed(
                &header(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
        ),
        (
            "no subject",
            signed(
                &header(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
        ),
        (
            "subject not a user id",
            signed(&header(&kid), &with(&|c| c["sub"] = json!("admin"))),
        ),
        (
            "no expiry",
            signed(
                &header(&kid),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
        ),
        (
            "over 8 KiB",
            signed(
                &header(&kid),
                &with(&|c| c["pad"] = json!("p".repeat(9000))),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
        ("empty segments", "..".to_owned()),
    ];
    let mut typ = header(&kid);
    typ.typ = Some("JWT".into());
    cases.push(("typ JWT (not an access token)", signed(&typ, &good)));
    let mut jku = header(&kid);
    jku.jku = Some("https://attacker.example/jwks.json".into());
    cases.push(("jku header", signed(&jku, &good)));
    let mut x5u = header(&kid);
    x5u.x5u = Some("https://attacker.example/cert.pem".into());
    cases.push(("x5u header", signed(&x5u, &good)));
    // Signed with the service's own key and kid: refused for the header
    // field alone (the signature and kid would pass).
    let mut embedded = header(&kid);
    embedded.jwk =
        Some(jsonwebtoken::jwk::Jwk::from_encoding_key(&app.key.key, Algorithm::EdDSA).unwrap());
    cases.push(("embedded jwk", signed(&embedded, &good)));
    cases.push((
        "crit header",
        signed_raw(
            &app.key.key,
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
            &good,
        ),
    ));
    let control = signed_raw(
        &app.key.key,
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
        &good,
    );
    assert!(
        app.me(&control).await.is_ok(),
        "the same construction without the refused header fields is accepted"
    );
    // HS256 signed with the public key as the secret (key confusion).
    let public = app.public_key().await;
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    cases.push((
        "HS256 key confusion",
        sign(&EncodingKey::from_secret(&public), &hs, &good),
    ));
    // One payload byte changed (roles tampered), signature kept.
    let token = signed(&header(&kid), &good);
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["roles"] = json!(["admin", "auditor"]);
    cases.push((
        "tampered roles",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        ),
    ));

    for (why, token) in &cases {
        inactive(&app, token, why).await;
    }
}

#[tokio::test]
async fn disabled_users_tokens_become_inactive() {
    let app = spawn_app().await;
    let login = app.user("olga@example.com").await;
    let admin = app.admin().await;
    app.users()
        .disable_user(bearer(
            pb::DisableUserRequest {
                user_id: login.user.as_ref().unwrap().id.clone(),
            },
            &admin.access_token,
        ))
        .await
        .unwrap();
    inactive(&app, &login.access_token, "disabled user").await;
}

#[tokio::test]
async fn published_keys_are_public_only() {
    let app = spawn_app().await;
    let keys = app
        .auth()
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid, app.key.kid);
    assert_eq!(keys.keys[0].algorithm, "EdDSA");
    assert_eq!(keys.keys[0].public_key.len(), 32);
    let jwks: Value = serde_json::from_str(&keys.jwks_json).unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], app.key.kid);
    assert_eq!(
        URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap(),
        keys.keys[0].public_key
    );
    assert!(jwk.get("d").is_none(), "never a private part");
}

#[tokio::test]
async fn tokens_survive_a_restart_with_a_generated_key() {
    // No key file: the key is generated once and kept in the database.
    let mut app = spawn_app_with(|c| c.signing_key_files.clear()).await;
    let login = app.user("pia@example.com").await;
    app.stop().await;
    let url = app.db.url.clone();
    let again = spawn_app_with(move |c| {
        c.signing_key_files.clear();
        c.database_url = url;
    })
    .await;
    assert_eq!(
        again.me(&login.access_token).await.unwrap().email,
        "pia@example.com"
    );
}

/// Tokens at the edges of what is allowed are accepted: about to expire,
/// expired but within the 30 s of skew, valid from (or issued) 30 s in the
/// future, and large but under 8 KiB; one second further, each is refused.
#[tokio::test]
async fn tokens_at_the_edges_are_accepted() {
    let app = spawn_app().await;
    let user = app.register("edge@example.com").await;
    let good = claims(&app, &user.id);
    let at = now(&app);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        sign(&app.key.key, &header(&app.key.kid), &c)
    };
    let cases = [
        ("about to expire", with(&|c| c["exp"] = json!(at + 1))),
        (
            "expired within the skew",
            with(&|c| c["exp"] = json!(at - 29)),
        ),
        (
            "valid from the skew's end",
            with(&|c| c["nbf"] = json!(at + 30)),
        ),
        (
            "issued at the skew's end",
            with(&|c| c["iat"] = json!(at + 30)),
        ),
        ("7 KiB", with(&|c| c["pad"] = json!("p".repeat(5000)))),
    ];
    // Exactly 8 KiB, the largest allowed: the padding found by trying.
    let exactly = (5000..6500)
        .map(|n| with(&|c| c["pad"] = json!("p".repeat(n))))
        .find(|t| t.len() == 8 * 1024)
        .expect("some padding makes the token 8192 bytes");
    let cases = cases.into_iter().chain([("exactly 8 KiB", exactly)]);
    for (what, token) in cases {
        assert!(token.len() <= 8 * 1024, "{what}");
        let me = app.me(&token).await;
        assert_eq!(me.map(|u| u.id).ok(), Some(user.id.clone()), "{what}");
    }
    // One second further each is refused (the service's clock stands still).
    for (what, token) in [
        (
            "expired at the skew's end",
            with(&|c| c["exp"] = json!(at - 30)),
        ),
        (
            "valid from past the skew",
            with(&|c| c["nbf"] = json!(at + 31)),
        ),
        ("issued past the skew", with(&|c| c["iat"] = json!(at + 31))),
    ] {
        let refused = app.me(&token).await.expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}");
    }
}

/// A token remembered as verified expires at the same instant as one seen
/// for the first time: at `exp` plus the 30 s of skew, to the second.
#[tokio::test]
async fn a_remembered_token_expires_like_any_other() {
    let app = spawn_app().await;
    let user = app.register("cached@example.com").await;
    let at = now(&app);
    let mut c = claims(&app, &user.id);
    c["exp"] = json!(at + 10);
    let token = sign(&app.key.key, &header(&app.key.kid), &c);
    app.me(&token).await.unwrap();
    app.clock.advance(std::time::Duration::from_secs(39));
    app.me(&token)
        .await
        .expect("29 s past exp: within the skew");
    app.clock.advance(std::time::Duration::from_secs(1));
    let refused = app.me(&token).await.expect_err("30 s past exp");
    assert_eq!(refused.code(), Code::Unauthenticated);
}
