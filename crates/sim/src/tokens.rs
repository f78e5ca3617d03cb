//! Access tokens the simulated STS has issued and when each expires on the simulator's clock, so
//! every simulated API can refuse an expired one as Google does.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// Access tokens the STS has issued, each with its expiry on the simulator's clock, so the
/// simulated APIs can refuse an expired one as Google does (401 UNAUTHENTICATED).
#[derive(Debug)]
pub(crate) struct TokenLedger {
    /// `expires_in` of the tokens issued from now on (Google's default is an hour).
    pub lifetime: Duration,
    expiry: HashMap<String, SystemTime>,
}

impl Default for TokenLedger {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(3600),
            expiry: HashMap::new(),
        }
    }
}

impl TokenLedger {
    /// A new token valid for `lifetime` from `now`.
    pub fn issue(&mut self, now: SystemTime) -> (String, Duration) {
        let lifetime = self.lifetime;
        (self.issue_for(now, lifetime), lifetime)
    }

    /// A new token valid for `lifetime` from `now` (an impersonated token asks for its own).
    pub fn issue_for(&mut self, now: SystemTime, lifetime: Duration) -> String {
        let token = format!("sim-exchanged-token-{}", self.expiry.len() + 1);
        self.expiry.insert(token.clone(), now + lifetime);
        token
    }

    /// Ends every token issued so far at `now`, as a revocation or a client clock running
    /// behind would: the client still believes them valid.
    pub fn revoke_all(&mut self, now: SystemTime) {
        for expiry in self.expiry.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }

    pub fn issued(&self) -> usize {
        self.expiry.len()
    }

    pub fn is_issued(&self, token: &str) -> bool {
        self.expiry.contains_key(token)
    }

    /// An issued token past its expiry; a token the STS never issued is not judged here.
    pub fn is_expired(&self, token: &str, now: SystemTime) -> bool {
        self.expiry.get(token).is_some_and(|expiry| now >= *expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_expires_after_its_lifetime() {
        let mut ledger = TokenLedger {
            lifetime: Duration::from_secs(3),
            ..TokenLedger::default()
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let (token, lifetime) = ledger.issue(start);
        assert_eq!(lifetime, Duration::from_secs(3));
        assert!(!ledger.is_expired(&token, start + Duration::from_secs(2)));
        assert!(ledger.is_expired(&token, start + Duration::from_secs(3)));
        assert!(!ledger.is_expired("not-issued-here", start + Duration::from_secs(9)));
        assert_ne!(
            ledger.issue(start).0,
            token,
            "every exchange issues a new token"
        );
    }
}
