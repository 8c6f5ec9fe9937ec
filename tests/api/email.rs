//! The SMTP client (`api::notifications::email`) against a real SMTP listener.

use std::time::Duration;

use api::{
    domain::Email,
    notifications::{
        SendError,
        email::{EmailMessage, SmtpMailer, SmtpSettings},
    },
};

use crate::smtp::SmtpListener;

fn mailer(listener: &SmtpListener) -> SmtpMailer {
    let settings = SmtpSettings::parse(&listener.url()).expect("listener URL");
    let from = Email::parse("pedidos@bistro.example.com").expect("address");
    SmtpMailer::new(
        &settings,
        Some("Bistrô Central"),
        &from,
        Duration::from_secs(5),
    )
    .expect("mailer")
}

fn receipt() -> EmailMessage {
    EmailMessage {
        to: Email::parse("maria@example.org").expect("address"),
        to_name: Some("Maria Silva".into()),
        subject: "Your order 1042 is ready".into(),
        text: "Hello Maria, order 1042 is ready for pickup.".into(),
        html: Some("<p>Hello Maria, order <b>1042</b> is ready for pickup.</p>".into()),
        list_unsubscribe: Some(
            reqwest::Url::parse("https://platform.example.com/unsubscribe?token=abc").expect("url"),
        ),
    }
}

#[tokio::test]
async fn an_email_arrives_with_its_headers_and_both_parts() {
    let listener = SmtpListener::start().await;

    let accepted = mailer(&listener).send(&receipt()).await.expect("sent");

    let received = listener.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.mail_from, "pedidos@bistro.example.com");
    assert_eq!(message.rcpt_to, ["maria@example.org"]);
    assert_eq!(accepted.provider, "smtp");
    assert_eq!(
        message.header("Message-ID").as_deref(),
        Some(accepted.provider_message_id.as_str())
    );
    assert!(
        accepted
            .provider_message_id
            .ends_with("@bistro.example.com>"),
        "{}",
        accepted.provider_message_id
    );
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("Your order 1042 is ready")
    );
    assert_eq!(
        message.header("To").as_deref(),
        Some("\"Maria Silva\" <maria@example.org>")
    );
    let from = message.header("From").expect("From");
    assert!(from.ends_with("<pedidos@bistro.example.com>"), "{from}");
    assert_eq!(
        message.header("List-Unsubscribe").as_deref(),
        Some("<https://platform.example.com/unsubscribe?token=abc>")
    );
    assert_eq!(
        message.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let content_type = message.header("Content-Type").expect("Content-Type");
    assert!(
        content_type.starts_with("multipart/alternative;"),
        "{content_type}"
    );
    let text_at = message
        .data
        .find("Content-Type: text/plain")
        .expect("a text part");
    let html_at = message
        .data
        .find("Content-Type: text/html")
        .expect("an HTML part");
    assert!(
        text_at < html_at,
        "the plain part comes first, the preferred HTML last"
    );
    assert!(
        message
            .data
            .contains("Hello Maria, order 1042 is ready for pickup.")
    );
    assert!(
        message
            .data
            .contains("<p>Hello Maria, order <b>1042</b> is ready for pickup.</p>")
    );
}

#[tokio::test]
async fn an_email_without_html_is_plain_text() {
    let listener = SmtpListener::start().await;
    let plain = EmailMessage {
        html: None,
        list_unsubscribe: None,
        ..receipt()
    };

    mailer(&listener).send(&plain).await.expect("sent");

    let message = &listener.received()[0];
    let content_type = message.header("Content-Type").expect("Content-Type");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(message.header("List-Unsubscribe"), None);
}

#[tokio::test]
async fn a_5xx_refusal_is_permanent_and_a_4xx_retryable_with_the_reply_code() {
    let listener = SmtpListener::start().await;
    listener.refuse_recipients_with("550 5.1.1 No such user here");
    let refused = mailer(&listener)
        .send(&receipt())
        .await
        .expect_err("refused");
    assert!(
        matches!(&refused, SendError::Permanent { code, .. } if code == "550"),
        "{refused}"
    );

    listener.refuse_recipients_with("451 4.3.0 Mailbox busy, try later");
    let deferred = mailer(&listener)
        .send(&receipt())
        .await
        .expect_err("deferred");
    assert!(
        matches!(&deferred, SendError::Retryable { code, .. } if code == "451"),
        "{deferred}"
    );
    assert!(listener.received().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let settings = SmtpSettings::parse(&format!("smtp://127.0.0.1:{port}?tls=none")).expect("url");
    let from = Email::parse("pedidos@bistro.example.com").expect("address");
    let mailer = SmtpMailer::new(&settings, None, &from, Duration::from_secs(2)).expect("mailer");

    let error = mailer.send(&receipt()).await.expect_err("unreachable");

    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.code(), "connect");
}
