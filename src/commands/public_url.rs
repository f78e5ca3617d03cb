//! The URL a rollout's environment is reached at (the action's `url` output and the deployment's
//! `environment_url`): the config's `url`, else the service URI Cloud Run reported to the rollout.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::rollout::ports::{
    NewRevision, Platform, PortResult, RevisionInfo, ServiceState, TrafficChange,
};

/// A platform that remembers the last service URI it read, so the URL costs no extra request.
pub struct UriSeen<'a> {
    inner: &'a dyn Platform,
    uri: Mutex<Option<String>>,
}

impl<'a> UriSeen<'a> {
    pub fn new(inner: &'a dyn Platform) -> Self {
        Self {
            inner,
            uri: Mutex::new(None),
        }
    }

    /// The last URI Cloud Run gave for the service, if any.
    pub fn uri(&self) -> Option<String> {
        self.uri.lock().expect("uri").clone()
    }

    fn remember(&self, service: PortResult<ServiceState>) -> PortResult<ServiceState> {
        if let Ok(ServiceState { uri: Some(uri), .. }) = &service {
            *self.uri.lock().expect("uri") = Some(uri.clone());
        }
        service
    }
}

#[async_trait]
impl Platform for UriSeen<'_> {
    async fn read_service(&self) -> PortResult<ServiceState> {
        self.remember(self.inner.read_service().await)
    }

    async fn read_revision(&self, revision: &str) -> PortResult<RevisionInfo> {
        self.inner.read_revision(revision).await
    }

    async fn list_revisions(&self) -> PortResult<Vec<RevisionInfo>> {
        self.inner.list_revisions().await
    }

    async fn create_revision(
        &self,
        spec: &NewRevision,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        self.remember(self.inner.create_revision(spec, etag, deadline).await)
    }

    async fn set_traffic(
        &self,
        change: &TrafficChange,
        etag: &str,
        deadline: Duration,
    ) -> PortResult<ServiceState> {
        self.remember(self.inner.set_traffic(change, etag, deadline).await)
    }
}

/// The environment's public URL: the config's `url` wins over the service's own URI (a custom
/// domain is what people reach).
pub fn public_url(configured: Option<&str>, seen: Option<String>) -> Option<String> {
    configured
        .map(str::to_string)
        .or(seen)
        .filter(|url| !url.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_url_wins_over_the_service_uri() {
        let run_app = Some("https://web-abc-uc.a.run.app".to_string());
        assert_eq!(
            public_url(Some("https://app.loopcloser.example"), run_app.clone()).as_deref(),
            Some("https://app.loopcloser.example")
        );
        assert_eq!(public_url(None, run_app.clone()), run_app);
        assert_eq!(public_url(None, None), None);
    }
}
