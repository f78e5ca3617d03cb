//! A fake Slack incoming webhook on loopback: it answers as Slack does (200 `ok` for a JSON body
//! with `text`, 400 `invalid_payload` otherwise), or 500, or never; and keeps every post it got.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// How the webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Slack,
    ServerError,
    /// Reads the post and never answers.
    Hang,
}

/// The secret part of every fake webhook's path, as Slack's is: it must never be printed.
pub const SECRET: &str = "T0000/B0000/XXXXsecretXXXX";

#[derive(Clone)]
pub struct Webhook {
    /// `http://127.0.0.1:PORT/services/SECRET`.
    pub url: String,
    posts: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    pub async fn start(answer: Answer) -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(&format!("/services/{SECRET}"), post(receive))
            .with_state((answer, posts.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/services/{SECRET}",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, posts }
    }

    /// Every body posted, in order (a resent message appears again).
    pub fn posts(&self) -> Vec<Value> {
        self.posts.lock().unwrap().clone()
    }

    /// The `text` of every post.
    pub fn texts(&self) -> Vec<String> {
        self.posts()
            .iter()
            .map(|post| post["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// How every shiftgate result shows a fake webhook: its secret path cut.
pub fn masked(url: &str) -> String {
    let (base, _) = url.split_once("/services/").unwrap();
    format!("{base}/services/…")
}

async fn receive(
    State((answer, posts)): State<(Answer, Arc<Mutex<Vec<Value>>>)>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    posts
        .lock()
        .unwrap()
        .push(json.clone().unwrap_or(Value::Null));
    match answer {
        Answer::Hang => std::future::pending().await,
        Answer::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        Answer::Slack if json.is_some_and(|json| json["text"].is_string()) => {
            (StatusCode::OK, "ok")
        }
        Answer::Slack => (StatusCode::BAD_REQUEST, "invalid_payload"),
    }
}
