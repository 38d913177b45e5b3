use document_service::TokenValidation;
use tonic::transport::Channel;
use tonic_reflection::pb::{v1, v1alpha};

use crate::helpers::*;

async fn list_v1(channel: &Channel) -> Vec<String> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    match stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1::server_reflection_response::MessageResponse::ListServicesResponse(list) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn list_v1alpha(channel: &Channel) -> Vec<String> {
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    match stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn each_server_lists_the_services_it_serves() {
    let stack = spawn_stack(TokenValidation::Local).await;
    let auth_v1 = list_v1(&stack.auth.channel).await;
    assert_eq!(
        auth_v1,
        vec![
            "docverify.audit.v1.AuditService",
            "docverify.auth.v1.AuthService",
            "docverify.auth.v1.RevocationService",
            "docverify.auth.v1.ServiceAccountService",
            "docverify.auth.v1.UserService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ]
    );
    let docs_v1 = list_v1(&stack.docs.channel).await;
    assert_eq!(
        docs_v1,
        vec![
            "docverify.audit.v1.AuditService",
            "docverify.document.v1.DocumentService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ]
    );
    let docs_v1alpha = list_v1alpha(&stack.docs.channel).await;
    assert!(docs_v1alpha.contains(&"docverify.document.v1.DocumentService".to_owned()));
    assert!(docs_v1alpha.contains(&"grpc.reflection.v1alpha.ServerReflection".to_owned()));
    let auth_v1alpha = list_v1alpha(&stack.auth.channel).await;
    assert!(auth_v1alpha.contains(&"docverify.auth.v1.UserService".to_owned()));
}
