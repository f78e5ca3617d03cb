//! The interrupt: SIGINT/SIGTERM/SIGHUP as a cancellation token shared by the engine, the
//! commands and the GitHub dispatcher; raising it is one-way.

use tokio_util::sync::CancellationToken;

/// Tells the engine that SIGINT/SIGTERM/SIGHUP arrived. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Interrupt(CancellationToken);

/// Raises the interrupt.
#[derive(Debug)]
pub struct InterruptTrigger(CancellationToken);

impl InterruptTrigger {
    pub fn trigger(&self) {
        self.0.cancel();
    }
}

impl Interrupt {
    pub fn channel() -> (InterruptTrigger, Interrupt) {
        let token = CancellationToken::new();
        (InterruptTrigger(token.clone()), Interrupt(token))
    }

    /// An interrupt that never fires: nobody holds its trigger, so `fired` pends for ever.
    pub fn never() -> Interrupt {
        Interrupt::channel().1
    }

    pub fn is_set(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once the interrupt has been raised.
    pub async fn fired(&self) {
        self.0.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_reaches_every_clone_and_stays_raised() {
        let (trigger, interrupt) = Interrupt::channel();
        let clone = interrupt.clone();
        assert!(!interrupt.is_set());
        trigger.trigger();
        assert!(interrupt.is_set() && clone.is_set());
        clone.fired().await;
        interrupt.fired().await;
    }

    #[tokio::test(start_paused = true)]
    async fn never_does_not_fire() {
        let never = Interrupt::never();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(3600), never.fired());
        assert!(waited.await.is_err());
        assert!(!never.is_set());
    }
}
