use serde_json::Value;
use tonic::Code;

use crate::helpers::*;
use shared::proto::auth::v1 as pb;

#[tokio::test]
async fn admin_changes_roles_and_the_change_is_audited() {
    let app = spawn_app().await;
    let login = app.user("quinn@example.com").await;
    let id = login.user.as_ref().unwrap().id.clone();
    let admin = app.admin().await;

    let user = set_roles(&app, &admin.access_token, &id, &["verifier", "auditor"])
        .await
        .unwrap();
    assert_eq!(user.roles, vec!["auditor", "verifier"]);
    // The old token carried the old roles: auth-service refuses it now.
    assert_error(
        app.me(&login.access_token).await,
        Code::Unauthenticated,
        "INVALID_TOKEN",
    );
    // A refresh hands out a token with the new roles.
    let refreshed = app
        .auth()
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refreshed.user.unwrap().roles, vec!["auditor", "verifier"]);
    // Now an auditor: may read users.
    app.users()
        .get_user(bearer(
            pb::GetUserRequest {
                user_id: id.clone(),
            },
            &refreshed.access_token,
        ))
        .await
        .unwrap();

    let events = app.events(&admin.access_token, "user.roles_changed").await;
    assert_eq!(events.len(), 1);
    let details: Value = serde_json::from_str(&events[0].details_json).unwrap();
    assert_eq!(details["old_roles"], serde_json::json!(["user"]));
    assert_eq!(
        details["new_roles"],
        serde_json::json!(["auditor", "verifier"])
    );
    assert_eq!(events[0].actor_email, ADMIN_EMAIL);

    let bad = set_roles(&app, &admin.access_token, &id, &["user", "superuser"]).await;
    let status = assert_error(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), vec!["roles[1]"]);
}

#[tokio::test]
async fn the_last_admin_cannot_lock_themselves_out() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let me = admin.user.as_ref().unwrap().id.clone();
    assert_error(
        set_roles(&app, &admin.access_token, &me, &["user"]).await,
        Code::FailedPrecondition,
        "LAST_ADMIN_PROTECTION",
    );
    let disable = app
        .users()
        .disable_user(bearer(
            pb::DisableUserRequest {
                user_id: me.clone(),
            },
            &admin.access_token,
        ))
        .await;
    assert_error(disable, Code::FailedPrecondition, "LAST_ADMIN_PROTECTION");
    // The refusals changed nothing: still an enabled admin, same token.
    let unchanged = app.me(&admin.access_token).await.unwrap();
    assert_eq!(unchanged.roles, vec!["admin"]);
    assert!(!unchanged.disabled);
    // Adding roles while keeping admin is fine.
    set_roles(&app, &admin.access_token, &me, &["admin", "auditor"])
        .await
        .unwrap();
}

#[tokio::test]
async fn disable_and_enable() {
    let app = spawn_app().await;
    let email = "rosa@example.com";
    let login = app.user(email).await;
    let id = login.user.as_ref().unwrap().id.clone();
    let admin = app.admin().await;
    let user = app
        .users()
        .disable_user(bearer(
            pb::DisableUserRequest {
                user_id: id.clone(),
            },
            &admin.access_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(user.disabled);
    assert_error(
        app.login(email, PASSWORD).await,
        Code::PermissionDenied,
        "USER_DISABLED",
    );
    let refresh = app
        .auth()
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await;
    assert_error(refresh, Code::Unauthenticated, "INVALID_REFRESH_TOKEN");

    app.users()
        .enable_user(bearer(
            pb::EnableUserRequest {
                user_id: id.clone(),
            },
            &admin.access_token,
        ))
        .await
        .unwrap();
    let again = app.login(email, PASSWORD).await.unwrap();
    app.me(&again.access_token).await.unwrap();
    assert_eq!(
        app.events(&admin.access_token, "user.disabled").await.len(),
        1
    );
    assert_eq!(
        app.events(&admin.access_token, "user.enabled").await.len(),
        1
    );
}

#[tokio::test]
async fn users_need_their_permissions() {
    let app = spawn_app().await;
    let login = app.user("sam@example.com").await;
    let denied = app
        .users()
        .list_users(bearer(pb::ListUsersRequest::default(), &login.access_token))
        .await;
    assert_error(denied, Code::PermissionDenied, "PERMISSION_DENIED");
    let anonymous = app
        .users()
        .list_users(pb::ListUsersRequest::default())
        .await;
    assert_error(anonymous, Code::Unauthenticated, "MISSING_TOKEN");

    let admin = app.admin().await;
    let denials = app.events(&admin.access_token, "authz.denied").await;
    assert_eq!(denials.len(), 1);
    assert_eq!(
        denials[0].target_id,
        "/docverify.auth.v1.UserService/ListUsers"
    );
    assert_eq!(denials[0].actor_email, "sam@example.com");
}

#[tokio::test]
async fn list_users_pages_with_sealed_tokens() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.register(&format!("page{i}@example.com")).await;
    }
    let admin = app.admin().await;
    let list = |size: i32, token: String| {
        let mut client = app.users();
        let auth = admin.access_token.clone();
        async move {
            client
                .list_users(bearer(
                    pb::ListUsersRequest {
                        page_size: size,
                        page_token: token,
                    },
                    &auth,
                ))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(2, token).await.unwrap();
        assert!(page.users.len() <= 2);
        seen.extend(page.users.into_iter().map(|u| u.email));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen.len(),
        6,
        "five users and the admin, each once: {seen:?}"
    );
    assert_eq!(seen[0], "page4@example.com", "newest first");

    assert_error(
        list(-1, String::new()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    let first = list(1, String::new()).await.unwrap();
    let mut forged = first.next_page_token.clone();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    assert_error(
        list(1, forged).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_error(
        list(1, "%%%".into()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(
        list(1_000_000_000, String::new())
            .await
            .unwrap()
            .users
            .len(),
        6
    );

    let bad_id = app
        .users()
        .get_user(bearer(
            pb::GetUserRequest {
                user_id: "not-a-uuid".into(),
            },
            &admin.access_token,
        ))
        .await;
    let status = assert_error(bad_id, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violated_fields(&status), vec!["user_id"]);
    let missing = app
        .users()
        .get_user(bearer(
            pb::GetUserRequest {
                user_id: uuid::Uuid::now_v7().to_string(),
            },
            &admin.access_token,
        ))
        .await;
    assert_error(missing, Code::NotFound, "NOT_FOUND");
}
