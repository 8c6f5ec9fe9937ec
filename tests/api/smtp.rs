//! A real SMTP receiver for tests (RFC 5321's EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; no TLS,
//! no AUTH), listening on 127.0.0.1:0. It keeps every message it accepts, raw, with its
//! envelope, and can be told to refuse recipients with a given reply, so a test can see both
//! what a mailer sends and how it takes a 4xx or a 5xx.
//!
//! It lives with the end-to-end tests rather than in the application: nothing in production
//! receives mail, and both the email client's tests and the notification flows' tests use it.

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent after DATA, dot-unstuffed, without the final `.` line.
    pub data: String,
}

impl Received {
    /// The value of the first header named `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            match &mut value {
                Some(current) if line.starts_with([' ', '\t']) => {
                    current.push_str(line.trim_start())
                }
                Some(_) => break,
                None => {
                    if let Some((key, rest)) = line.split_once(':')
                        && key.eq_ignore_ascii_case(name)
                    {
                        value = Some(rest.trim().to_owned());
                    }
                }
            }
        }
        value
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// When set, every RCPT TO gets this reply line (e.g. `550 5.1.1 No such user`).
    refuse_recipients: Option<String>,
}

pub struct SmtpListener {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl SmtpListener {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP listener");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_task = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, for_task.clone()));
            }
        });
        Self { port, shared, task }
    }

    /// `smtp://127.0.0.1:{port}?tls=none`, the URL a mailer is configured with.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Answers every RCPT TO with `reply`, a full reply line such as `451 4.3.0 Try later`.
    pub fn refuse_recipients_with(&self, reply: &str) {
        self.shared.lock().expect("lock").refuse_recipients = Some(reply.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }
}

impl Drop for SmtpListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    let reply = async |writer: &mut tokio::net::tcp::OwnedWriteHalf, text: &str| {
        writer
            .write_all(format!("{text}\r\n").as_bytes())
            .await
            .is_ok()
    };
    if !reply(&mut writer, "220 localhost ESMTP test listener").await {
        return;
    }
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => "250-localhost\r\n250-8BITMIME\r\n250 PIPELINING".to_owned(),
            "HELO" | "NOOP" => "250 OK".to_owned(),
            "MAIL" => {
                mail_from = angle_address(&command);
                rcpt_to.clear();
                "250 2.1.0 OK".to_owned()
            }
            "RCPT" => {
                let refusal = shared.lock().expect("lock").refuse_recipients.clone();
                match refusal {
                    Some(refusal) => refusal,
                    None => {
                        rcpt_to.push(angle_address(&command));
                        "250 2.1.5 OK".to_owned()
                    }
                }
            }
            "DATA" if rcpt_to.is_empty() => "503 5.5.1 No valid recipients".to_owned(),
            "DATA" => {
                if !reply(&mut writer, "354 End data with <CR><LF>.<CR><LF>").await {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                shared.lock().expect("lock").received.push(Received {
                    mail_from: mail_from.clone(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
                "250 2.0.0 OK queued".to_owned()
            }
            "RSET" => {
                mail_from.clear();
                rcpt_to.clear();
                "250 2.0.0 OK".to_owned()
            }
            "QUIT" => {
                reply(&mut writer, "221 2.0.0 Bye").await;
                return;
            }
            _ => "502 5.5.2 Command not recognized".to_owned(),
        };
        if !reply(&mut writer, &answer).await {
            return;
        }
    }
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn angle_address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}
