//! Signs in and lists the documents the caller may see, page by page.
//!
//! ```sh
//! DOCVERIFY_EMAIL=ann@example.com DOCVERIFY_PASSWORD='…' cargo run --example list_documents
//! ```
#![allow(clippy::print_stdout)] // an example prints what it found

mod common;

use docverify_client::proto::document::v1::ListDocumentsRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_session, mut clients) = common::sign_in("DOCVERIFY").await?;
    let mut page_token = String::new();
    let mut seen = 0;
    loop {
        let page = clients
            .documents
            .list_documents(ListDocumentsRequest {
                page_size: 50,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for document in &page.documents {
            println!(
                "{}  {:<10}  {:>9} B  {}",
                document.id,
                format!("{:?}", document.status()),
                document.size_bytes,
                document.title
            );
        }
        seen += page.documents.len();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    println!("{seen} documents");
    Ok(())
}
