//! What each scenario sends, and the users and documents they need.
//!
//! Users: the bootstrap admin; a `reader` who owns the seeded documents (and
//! uploads, reads and lists them); a `verifier` (reviews the reader's
//! documents: nobody may review their own); and one login user per login
//! worker, since two logins of one email at once race for its throttle row.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use shared::proto::{
    auth::v1::{
        self as auth_pb, auth_service_client::AuthServiceClient,
        user_service_client::UserServiceClient,
    },
    document::v1::{self as pb, document_service_client::DocumentServiceClient},
};
use tokio_stream::Stream;
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    load::{self, Failure, Measured, Plan},
    stack::{ADMIN_EMAIL, ADMIN_PASSWORD},
    writes::{Lag, LagWatch},
};

/// `authorization: Bearer <token>`, parsed once and cloned per call.
pub(crate) type Bearer = MetadataValue<Ascii>;

const PASSWORD: &str = "quartz violin meadow lantern";
/// Documents the reader owns before the read scenarios: enough for `get` to
/// spread over and for `list` to fill its page.
const SEEDED_DOCUMENTS: usize = 200;
const PAGE_SIZE: usize = 50;
/// The `upload` scenario's document size.
pub(crate) const SMALL_DOCUMENT: usize = 4 * 1024;
/// Upload chunk size on the wire (the test helpers' choice too).
const UPLOAD_CHUNK: usize = 64 * 1024;
/// Uploads in flight while seeding.
const SEED_CONCURRENCY: usize = 16;

/// Connections to each server; a worker uses `worker % len`.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub echo: Vec<Channel>,
    pub auth: Vec<Channel>,
    pub documents: Vec<Channel>,
    /// The bare server of `db-read` and `db-page`.
    pub bare: Vec<Channel>,
}

#[derive(Debug, Clone)]
pub(crate) struct Seed {
    /// An admin's token: `audit:read`, for the audit log's lag.
    pub admin: Bearer,
    pub reader: Bearer,
    /// Whose documents `list` pages through (the bare page reads the same).
    pub reader_id: String,
    /// The reader's access token itself, for ValidateToken.
    pub reader_token: Arc<str>,
    pub verifier: Bearer,
    pub documents: Arc<Vec<String>>,
    pub login_emails: Arc<Vec<String>>,
}

/// Everything a scenario needs.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub plan: Plan,
    pub concurrency: usize,
    pub clients: Clients,
    pub seed: Seed,
}

fn pick<T: Clone>(items: &[T], i: usize) -> T {
    items[i % items.len()].clone()
}

pub(crate) fn authed<T>(message: T, bearer: &Bearer) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

fn bearer(token: &str) -> Result<Bearer, String> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "the access token is not a valid header value".to_owned())
}

/// Creates the users and the reader's documents.
pub(crate) async fn seed(clients: &Clients, login_users: usize) -> Result<Seed, String> {
    let auth = pick(&clients.auth, 0);
    let admin = bearer(&login(&auth, ADMIN_EMAIL, ADMIN_PASSWORD).await?)?;
    let reader_id = register(&auth, "reader@bench.example").await?;
    let reader_token: Arc<str> = login(&auth, "reader@bench.example", PASSWORD).await?.into();
    let reader = bearer(&reader_token)?;
    let verifier_id = register(&auth, "verifier@bench.example").await?;
    UserServiceClient::new(auth.clone())
        .set_user_roles(authed(
            auth_pb::SetUserRolesRequest {
                user_id: verifier_id,
                roles: vec!["verifier".to_owned()],
            },
            &admin,
        ))
        .await
        .map_err(|s| format!("SetUserRoles: {s}"))?;
    // A role change revokes earlier tokens: log in after it.
    let verifier = bearer(&login(&auth, "verifier@bench.example", PASSWORD).await?)?;

    let emails: Vec<String> = (0..login_users)
        .map(|i| format!("login-{i}@bench.example"))
        .collect();
    let to_register = emails.clone();
    let channel = auth.clone();
    in_parallel(login_users, SEED_CONCURRENCY, move |i| {
        let (channel, email) = (channel.clone(), to_register[i].clone());
        async move { register(&channel, &email).await.map(drop) }
    })
    .await?;

    let documents = clients.documents.clone();
    let owner = reader.clone();
    let ids = in_parallel(SEEDED_DOCUMENTS, SEED_CONCURRENCY, move |i| {
        let (channel, owner) = (pick(&documents, i), owner.clone());
        async move {
            upload(channel, &owner, format!("seeded {i}"), SMALL_DOCUMENT, i)
                .await
                .map_err(|e| format!("seeding upload: {e:?}"))
        }
    })
    .await?;
    Ok(Seed {
        admin,
        reader,
        reader_id,
        reader_token,
        verifier,
        documents: Arc::new(ids),
        login_emails: Arc::new(emails),
    })
}

async fn register(channel: &Channel, email: &str) -> Result<String, String> {
    let response = AuthServiceClient::new(channel.clone())
        .register(auth_pb::RegisterRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            display_name: "Bench User".to_owned(),
        })
        .await
        .map_err(|s| format!("Register {email}: {s}"))?;
    response
        .into_inner()
        .user
        .map(|u| u.id)
        .ok_or_else(|| format!("Register {email}: no user in the answer"))
}

async fn login(channel: &Channel, email: &str, password: &str) -> Result<String, String> {
    AuthServiceClient::new(channel.clone())
        .login(auth_pb::LoginRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map(|r| r.into_inner().access_token)
        .map_err(|s| format!("Login {email}: {s}"))
}

/// Runs `task(i)` for `i` in `0..count`, `width` at a time, and returns the
/// outputs in order.
async fn in_parallel<T, F, Fut>(count: usize, width: usize, task: F) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, String>> + Send,
{
    let task = Arc::new(task);
    let workers: Vec<_> = (0..width.min(count))
        .map(|w| {
            let task = task.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (w..count).step_by(width) {
                    out.push((i, task(i).await?));
                }
                Ok::<_, String>(out)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await.map_err(|e| e.to_string())??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// The upload stream: metadata, then `size` bytes in chunks made as the
/// stream is read, so that the client never holds the document.
fn upload_stream(
    title: String,
    size: usize,
    fill: usize,
) -> impl Stream<Item = pb::UploadDocumentRequest> + Send + 'static {
    use pb::upload_document_request::Payload;
    let metadata = pb::UploadDocumentRequest {
        payload: Some(Payload::Metadata(pb::DocumentMetadata {
            filename: format!("{}.bin", title.replace(' ', "-")),
            title,
            content_type: "application/octet-stream".to_owned(),
        })),
    };
    let byte = (fill % 251) as u8;
    let chunks = (0..size.div_ceil(UPLOAD_CHUNK)).map(move |i| pb::UploadDocumentRequest {
        payload: Some(Payload::Chunk(vec![
            byte;
            UPLOAD_CHUNK
                .min(size - i * UPLOAD_CHUNK)
        ])),
    });
    tokio_stream::iter(std::iter::once(metadata).chain(chunks))
}

/// Uploads `size` bytes and returns the new document's id.
pub(crate) async fn upload(
    channel: Channel,
    owner: &Bearer,
    title: String,
    size: usize,
    fill: usize,
) -> Result<String, Failure> {
    let document = DocumentServiceClient::new(channel)
        .upload_document(authed(upload_stream(title, size, fill), owner))
        .await?
        .into_inner()
        .document
        .ok_or_else(|| Failure::Wrong("no document in the upload answer".to_owned()))?;
    if document.size_bytes != size as i64 {
        return Err(Failure::Wrong(format!(
            "stored {} bytes of {size}",
            document.size_bytes
        )));
    }
    Ok(document.id)
}

/// `echo`: the bare tonic server's empty unary handler; `health`: the same
/// handler behind docverify's layers (document-service's own health check:
/// public, so no token and no database).
pub(crate) async fn health_check(ctx: &Ctx, channels: &[Channel]) -> Result<Measured, String> {
    let channels = channels.to_vec();
    load::run(ctx.plan, ctx.concurrency, move |worker, _| {
        let mut client = HealthClient::new(pick(&channels, worker));
        async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    })
    .await
}

/// `me`: GetCurrentUser, a token check and nothing else.
pub(crate) async fn me(ctx: &Ctx) -> Result<Measured, String> {
    let (channels, reader) = (ctx.clients.auth.clone(), ctx.seed.reader.clone());
    load::run(ctx.plan, ctx.concurrency, move |worker, _| {
        let mut client = AuthServiceClient::new(pick(&channels, worker));
        let request = authed(auth_pb::GetCurrentUserRequest {}, &reader);
        async move {
            client.get_current_user(request).await?;
            Ok(())
        }
    })
    .await
}

/// `validate`: ValidateToken of the reader's token, as a remote-mode
/// verifier calls it for every request.
pub(crate) async fn validate(ctx: &Ctx) -> Result<Measured, String> {
    let (channels, token) = (ctx.clients.auth.clone(), ctx.seed.reader_token.clone());
    load::run(ctx.plan, ctx.concurrency, move |worker, _| {
        let mut client = AuthServiceClient::new(pick(&channels, worker));
        let request = auth_pb::ValidateTokenRequest {
            access_token: token.to_string(),
        };
        async move {
            let response = client.validate_token(request).await?.into_inner();
            if !response.active {
                return Err(Failure::Wrong("the reader's token is inactive".to_owned()));
            }
            Ok(())
        }
    })
    .await
}

/// `get`: GetDocument, spread over the reader's seeded documents.
pub(crate) async fn get(ctx: &Ctx) -> Result<Measured, String> {
    let reader = Some(ctx.seed.reader.clone());
    get_documents(ctx, ctx.clients.documents.clone(), reader).await
}

/// `db-read`: GetDocument's read on the bare server, the same documents as
/// `get`, no token.
pub(crate) async fn db_read(ctx: &Ctx) -> Result<Measured, String> {
    get_documents(ctx, ctx.clients.bare.clone(), None).await
}

/// GetDocument of the reader's documents on `channels`, with `reader`'s
/// token when there is one.
async fn get_documents(
    ctx: &Ctx,
    channels: Vec<Channel>,
    reader: Option<Bearer>,
) -> Result<Measured, String> {
    let (ids, concurrency) = (ctx.seed.documents.clone(), ctx.concurrency);
    load::run(ctx.plan, concurrency, move |worker, n| {
        let mut client = DocumentServiceClient::new(pick(&channels, worker));
        let document_id = pick(&ids, n as usize * concurrency + worker);
        let request = maybe_authed(pb::GetDocumentRequest { document_id }, reader.as_ref());
        async move {
            client.get_document(request).await?;
            Ok(())
        }
    })
    .await
}

/// `list`: ListDocuments, the reader's first page of 50, newest first.
pub(crate) async fn list(ctx: &Ctx) -> Result<Measured, String> {
    let reader = Some(ctx.seed.reader.clone());
    list_page(ctx, ctx.clients.documents.clone(), reader).await
}

/// `db-page`: ListDocuments' page of 50 on the bare server.
pub(crate) async fn db_page(ctx: &Ctx) -> Result<Measured, String> {
    list_page(ctx, ctx.clients.bare.clone(), None).await
}

/// The reader's first page of 50 on `channels`, with `reader`'s token when
/// there is one; a page of another size is an error.
async fn list_page(
    ctx: &Ctx,
    channels: Vec<Channel>,
    reader: Option<Bearer>,
) -> Result<Measured, String> {
    let owner_id = ctx.seed.reader_id.clone();
    load::run(ctx.plan, ctx.concurrency, move |worker, _| {
        let mut client = DocumentServiceClient::new(pick(&channels, worker));
        let message = pb::ListDocumentsRequest {
            page_size: PAGE_SIZE as i32,
            owner_id: owner_id.clone(),
            ..Default::default()
        };
        let request = maybe_authed(message, reader.as_ref());
        async move {
            let page = client.list_documents(request).await?.into_inner();
            if page.documents.len() != PAGE_SIZE {
                return Err(Failure::Wrong(format!(
                    "a page of {} documents, not {PAGE_SIZE}",
                    page.documents.len()
                )));
            }
            Ok(())
        }
    })
    .await
}

fn maybe_authed<T>(message: T, bearer: Option<&Bearer>) -> Request<T> {
    match bearer {
        Some(bearer) => authed(message, bearer),
        None => Request::new(message),
    }
}

/// `upload`: UploadDocument of 4 KiB (row, chunk and audit event in one
/// transaction), and how long each upload's event took to be sequenced.
pub(crate) async fn upload_small(ctx: &Ctx) -> Result<(Measured, Lag), String> {
    let (channels, reader) = (ctx.clients.documents.clone(), ctx.seed.reader.clone());
    let watch = LagWatch::start(pick(&channels, 0), &ctx.seed.admin).await?;
    let times = watch.times.clone();
    let measured = load::run(ctx.plan, ctx.concurrency, move |worker, n| {
        let (channel, reader, times) = (pick(&channels, worker), reader.clone(), times.clone());
        async move {
            let title = format!("upload {worker}-{n}");
            let id = upload(channel, &reader, title, SMALL_DOCUMENT, worker).await?;
            LagWatch::answered(&times, id);
            Ok(())
        }
    })
    .await?;
    let lag = watch.finish(std::time::Duration::from_secs(5)).await?;
    Ok((measured, lag))
}

/// Fresh pending documents for `review`: the reader uploads 1-byte ones flat
/// out for the span of `plan` (unmeasured).
pub(crate) async fn pending_documents(ctx: &Ctx, plan: Plan) -> Result<Vec<String>, String> {
    let (channels, reader) = (ctx.clients.documents.clone(), ctx.seed.reader.clone());
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = ids.clone();
    let seeding = load::run(plan, ctx.concurrency, move |worker, n| {
        let (channel, reader, ids) = (pick(&channels, worker), reader.clone(), collected.clone());
        async move {
            let id = upload(
                channel,
                &reader,
                format!("pending {worker}-{n}"),
                1,
                n as usize,
            )
            .await?;
            if let Ok(mut ids) = ids.lock() {
                ids.push(id);
            }
            Ok(())
        }
    })
    .await?;
    if seeding.error_count() > 0 {
        return Err(format!(
            "seeding pending documents failed: {:?}",
            seeding.errors
        ));
    }
    let ids = ids
        .lock()
        .map(|mut ids| std::mem::take(&mut *ids))
        .map_err(|_| "a seeding worker panicked".to_owned())?;
    Ok(ids)
}

/// `review`: VerifyDocument, each call on a document nobody reviewed yet.
pub(crate) async fn review(ctx: &Ctx, pending: Vec<String>) -> Result<Measured, String> {
    let (channels, verifier) = (ctx.clients.documents.clone(), ctx.seed.verifier.clone());
    let pending = Arc::new(pending);
    let next = Arc::new(AtomicUsize::new(0));
    load::run(ctx.plan, ctx.concurrency, move |worker, _| {
        let mut client = DocumentServiceClient::new(pick(&channels, worker));
        let document_id = pending.get(next.fetch_add(1, Ordering::Relaxed)).cloned();
        let verifier = verifier.clone();
        async move {
            let document_id = document_id.ok_or(Failure::Exhausted)?;
            let request = authed(
                pb::VerifyDocumentRequest {
                    document_id,
                    note: "checked".to_owned(),
                },
                &verifier,
            );
            client.verify_document(request).await?;
            Ok(())
        }
    })
    .await
}

/// `login`: Login with the right password, each worker as its own user.
pub(crate) async fn login_flat_out(ctx: &Ctx, workers: usize) -> Result<Measured, String> {
    let (channels, emails) = (ctx.clients.auth.clone(), ctx.seed.login_emails.clone());
    load::run(ctx.plan, workers, move |worker, _| {
        let mut client = AuthServiceClient::new(pick(&channels, worker));
        let email = pick(&emails, worker);
        async move {
            client
                .login(auth_pb::LoginRequest {
                    email,
                    password: PASSWORD.to_owned(),
                })
                .await?;
            Ok(())
        }
    })
    .await
}

/// `storm`: `get` measured while `logins` other clients log in flat out.
/// Returns get's figures, then the logins'.
pub(crate) async fn storm(ctx: &Ctx, logins: usize) -> Result<(Measured, Measured), String> {
    let (get, login) = tokio::join!(get(ctx), login_flat_out(ctx, logins));
    Ok((get?, login?))
}
