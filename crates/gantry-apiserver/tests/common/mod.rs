//! The in-process harness of the API's integration tests: a real API server on a real SQLite store in a
//! temporary directory, driven through `Api::handle` (the HTTPS layer is tested elsewhere).

#![allow(clippy::unwrap_used, dead_code)] // test setup; not every test file uses every helper

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_apiserver::api::{ApiRequest, Reply};
use gantry_apiserver::auth::User;
use gantry_apiserver::request::Query;
use gantry_apiserver::{Api, RunningServer};
use http::{HeaderMap, Method};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Cluster {
    server: Option<RunningServer>,
    pub api: Arc<Api>,
    shutdown: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        drop(self.server.take());
    }
}

pub fn patience() -> Duration {
    gantry_store::testing::patience()
}

pub async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.unwrap();
    let api = Arc::clone(&server.api);
    Cluster { server: Some(server), api, shutdown, _dir: Some(dir) }
}

pub struct Response {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Cluster {
    /// A server on the data directory `dir`, which the caller keeps (to start another server on it later).
    pub async fn start_in(dir: &std::path::Path) -> Cluster {
        let shutdown = CancellationToken::new();
        let server = gantry_apiserver::start_loopback(dir, shutdown.clone()).await.unwrap();
        let api = Arc::clone(&server.api);
        Cluster { server: Some(server), api, shutdown, _dir: None }
    }

    pub async fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Reply {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        headers.insert("user-agent", "semantics-test/1.0".parse().unwrap());
        let request = ApiRequest {
            method,
            path: path.to_string(),
            query: Query::parse(query),
            headers,
            body,
            user: User::new("tester", vec![]),
        };
        self.api.handle(request).await
    }

    pub async fn request(&self, method: Method, path_and_query: &str, content_type: &str, body: Bytes) -> Reply {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type", content_type.parse().unwrap());
        }
        self.request_with(method, path_and_query, headers, body).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let content_type = if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
        let body = body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap())).unwrap_or_default();
        self.finish(self.request(method, path, content_type, body).await)
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: Value) -> Response {
        let body = Bytes::from(serde_json::to_vec(&body).unwrap());
        self.finish(self.request(Method::PATCH, path, content_type, body).await)
    }

    pub fn finish(&self, reply: Reply) -> Response {
        match reply {
            Reply::Full { code, body, warnings, .. } => {
                Response { code, body: serde_json::from_slice(&body).unwrap_or(Value::Null), warnings }
            }
            Reply::Raw(r) => Response {
                code: r.status().as_u16(),
                body: serde_json::from_slice(r.body()).unwrap_or(Value::Null),
                warnings: vec![],
            },
            Reply::Stream { .. } => panic!("unexpected stream"),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, None).await
    }

    pub async fn watch(&self, path: &str) -> Watch {
        match self.request(Method::GET, path, "", Bytes::new()).await {
            Reply::Stream { rx, .. } => Watch { rx },
            Reply::Full { code, body, .. } => panic!("watch refused: {code} {}", String::from_utf8_lossy(&body)),
            Reply::Raw(_) => panic!("unexpected raw reply"),
        }
    }
}

pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Watch {
    pub async fn next(&mut self) -> Option<Value> {
        let chunk = tokio::time::timeout(patience(), self.rx.recv()).await.expect("no watch event in time")?;
        Some(serde_json::from_slice(&chunk).unwrap())
    }

    pub async fn next_event(&mut self) -> (String, Value) {
        let event = self.next().await.expect("the watch ended");
        (event["type"].as_str().unwrap().to_string(), event["object"].clone())
    }
}
