//! TLS for every outbound call: one rustls crypto provider (ring) and one root store (the
//! operating system's, through rustls-platform-verifier in reqwest).

use std::sync::Once;

/// Installs ring as the process-wide rustls provider, once. Every TLS user in the program asks
/// rustls for this default and panics without it: reqwest (built without a provider of its
/// own), and google-cloud-auth, which also signs service-account JWTs with its key provider.
pub fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is already installed; ring is the only one compiled in, so
        // it is this one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest builder that is safe to `build()`: the crypto provider is installed first. Every
/// HTTP client, octocrab's included, starts here, so tests and embedders that never run `main`
/// get the same TLS setup as the binary.
pub fn client_builder() -> reqwest::ClientBuilder {
    ensure_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_provider_is_ring() {
        ensure_crypto_provider();
        ensure_crypto_provider();
        let installed = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| s.suite())
                .collect::<Vec<_>>()
        };
        assert_eq!(suites(installed), suites(&ring));
    }

    /// Building a client sets up its TLS stack (provider and platform verifier) even when no
    /// https URL is ever used, so a missing provider shows up here, without any network.
    #[tokio::test]
    async fn every_client_builds_without_a_network() {
        let clock = crate::clock::Clock::new();
        crate::github::GitHub::new("https://api.github.com", "token", clock).expect("github");
        let google = crate::gcp::GoogleRest::new(
            "https://run.googleapis.com",
            crate::gcp::Credentials::Token("token".into()),
        );
        assert_eq!(google.base(), "https://run.googleapis.com");
        let _ = crate::health::HttpHealthEndpoint::new(std::time::Duration::from_secs(1));
        client_builder().build().expect("a plain client");
    }

    /// google-cloud-auth builds its own reqwest client for the token exchange; with no provider
    /// it would panic instead of reporting the refused connection.
    #[tokio::test]
    async fn google_credentials_fail_with_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("shiftgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let subject = dir.join("subject-token");
        std::fs::write(&subject, "a-subject-token").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let token_url = format!("http://{}/token", closed.local_addr().unwrap());
        drop(closed);
        let credentials = crate::gcp::Credentials::external_account(serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": token_url,
            "credential_source": {"file": subject.to_str().unwrap()},
        }));
        let rest = crate::gcp::GoogleRest::new("https://run.googleapis.com", credentials);
        let error = rest
            .send(
                reqwest::Method::GET,
                "v2/projects/p",
                &[],
                None,
                crate::gcp::Retry::Never,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("Google access token"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
