//! The registries a session talks to: one client per registry and set of credentials,
//! made on first use and shared by every job after, so connections and tokens are reused.

use crate::control::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::transport::auth::{Credentials, CredentialsProvider};
use crate::transport::TransportError;

use super::client::{Call, Client};
use super::{Pace, RetryPolicy};

/// How to reach registries, and the clients made so far.
pub struct RegistryPool {
    credentials: Arc<dyn CredentialsProvider>,
    tls_verify: bool,
    retry: RetryPolicy,
    pace: Pace,
    clients: Mutex<HashMap<ClientKey, Slot>>,
}

/// Where a client is made once and found after.
type Slot = Arc<Mutex<Option<Arc<Client>>>>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    registry: String,
    creds: Option<Credentials>,
}

impl RegistryPool {
    /// A pool that asks `credentials` for each registry. With `tls_verify` off, registries
    /// are reached by HTTPS without verifying their certificate, or by plain HTTP when
    /// they do not speak HTTPS; registries on `localhost`, `127.0.0.1` and `[::1]` always
    /// are.
    pub fn new(
        credentials: Arc<dyn CredentialsProvider>,
        tls_verify: bool,
        retry: RetryPolicy,
        pace: Pace,
    ) -> RegistryPool {
        RegistryPool {
            credentials,
            tls_verify,
            retry,
            pace,
            clients: Mutex::default(),
        }
    }

    /// The client for `repository` on `registry`, made on first use.
    pub(super) fn client(
        &self,
        registry: &str,
        repository: &str,
        loopback: bool,
        call: &Call,
    ) -> Result<Arc<Client>, TransportError> {
        let creds = self
            .credentials
            .credentials(registry, repository)
            .map_err(|source| TransportError::Credentials {
                registry: registry.to_string(),
                source,
            })?;
        let key = ClientKey {
            registry: registry.to_string(),
            creds: creds.clone(),
        };
        // The map is locked only to find the slot: making a client may wait on the network.
        let slot = self.clients.locked().entry(key).or_default().clone();
        let mut slot = slot.locked();
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::new(
            registry,
            self.tls_verify && !loopback,
            !loopback,
            creds,
            self.retry,
            self.pace,
            call,
        )?);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// How many clients were made (one per registry and set of credentials).
    pub fn clients(&self) -> usize {
        self.clients
            .locked()
            .values()
            .filter(|slot| slot.locked().is_some())
            .count()
    }
}

impl Default for RegistryPool {
    /// The user's credentials (auth files), verified TLS, the default retries.
    fn default() -> Self {
        RegistryPool::new(
            Arc::new(crate::transport::auth::UserCredentials::default()),
            true,
            RetryPolicy::default(),
            Pace::default(),
        )
    }
}

impl std::fmt::Debug for RegistryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryPool")
            .field("tls_verify", &self.tls_verify)
            .field("retry", &self.retry)
            .field("clients", &self.clients())
            .finish()
    }
}
