//! The session: what conversions share (the registry pool, the credentials provider,
//! the work directory) and what steers them (the events sink and the cancellation token).

use crate::control::FileError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::control::{Cancel, Control, Events, Silent};
use crate::error::Error;
use crate::model::ImageLocation;
use crate::transport::auth::{CredentialsProvider, PerRegistryFiles, UserCredentials};
use crate::transport::registry::{Pace, RegistryPool, RetryPolicy};
use crate::transport::{self, Sink, Source};

use super::layer_cache::LayerCache;
use super::scan::ScanLimits;

/// How a session is set up.
pub struct SessionOptions {
    /// Where credentials come from, asked per registry and repository.
    pub credentials: Arc<dyn CredentialsProvider>,
    /// Whether registries must speak HTTPS with a verified certificate (loopback
    /// registries never need to).
    pub tls_verify: bool,
    /// How failed registry requests are retried.
    pub retry: RetryPolicy,
    /// How slow a registry may be.
    pub pace: Pace,
    /// How many layers are read at once, and how much of their bodies may be kept.
    pub limits: ScanLimits,
    /// Where temporary files go (kept bodies, new layers, blobs kept for the sink);
    /// `None`: the system's temporary directory.
    pub work_dir: Option<PathBuf>,
    /// The scans of layers kept for the next image with the same layer (a server's
    /// jobs share one); `None`: every layer is read.
    pub layer_cache: Option<Arc<LayerCache>>,
    /// Where the events of its jobs go.
    pub events: Arc<dyn Events>,
    /// The token that stops its jobs.
    pub cancel: Cancel,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            credentials: Arc::new(UserCredentials::default()),
            tls_verify: true,
            retry: RetryPolicy::default(),
            pace: Pace::default(),
            limits: ScanLimits::default(),
            work_dir: None,
            layer_cache: None,
            events: Arc::new(Silent),
            cancel: Cancel::new(),
        }
    }
}

impl SessionOptions {
    /// Credentials for each registry in `files` (host -> an auth file of the
    /// `containers-auth.json` kind) read from its own file; the other registries' as
    /// before.
    pub fn with_auth_files(
        mut self,
        files: std::collections::BTreeMap<String, PathBuf>,
    ) -> SessionOptions {
        if !files.is_empty() {
            self.credentials = Arc::new(PerRegistryFiles {
                files,
                fallback: self.credentials,
            });
        }
        self
    }
}

/// What conversions share, and how they are steered. Every front end makes one and calls
/// [`Session::analyze`], [`Session::convert`] or [`Session::resolve`]; a server converting
/// many images at once gives each job its own events and token with [`Session::job`],
/// which keeps the registry pool (its connections and tokens) shared.
#[derive(Clone)]
pub struct Session {
    pool: Arc<RegistryPool>,
    work_dir: PathBuf,
    limits: ScanLimits,
    layer_cache: Option<Arc<LayerCache>>,
    control: Control,
}

impl Session {
    /// A session as `options` say.
    pub fn new(options: SessionOptions) -> Session {
        Session {
            pool: Arc::new(RegistryPool::new(
                options.credentials,
                options.tls_verify,
                options.retry,
                options.pace,
            )),
            work_dir: options.work_dir.unwrap_or_else(std::env::temp_dir),
            limits: options.limits,
            layer_cache: options.layer_cache,
            control: Control {
                events: options.events,
                cancel: options.cancel,
            },
        }
    }

    /// The same session for one job: its own events and cancellation, the registry pool
    /// and the work directory shared.
    pub fn job(&self, events: Arc<dyn Events>, cancel: Cancel) -> Session {
        Session {
            pool: self.pool.clone(),
            work_dir: self.work_dir.clone(),
            limits: self.limits,
            layer_cache: self.layer_cache.clone(),
            control: Control { events, cancel },
        }
    }

    /// The events and cancellation of this session's jobs.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The registry clients made so far.
    pub fn registries(&self) -> &RegistryPool {
        &self.pool
    }

    /// How many layers are read at once, and how much of their bodies may be kept.
    pub fn limits(&self) -> ScanLimits {
        self.limits
    }

    /// The layer cache its jobs share, when it has one.
    pub fn layer_cache(&self) -> Option<&LayerCache> {
        self.layer_cache.as_deref()
    }

    /// Opens a source for `location`.
    pub fn open_source(&self, location: &ImageLocation) -> Result<Box<dyn Source>, Error> {
        Ok(transport::open_source(location, &self.pool, &self.control)?)
    }

    /// Opens a sink for `location`.
    pub fn open_sink(&self, location: &ImageLocation) -> Result<Box<dyn Sink>, Error> {
        Ok(transport::open_sink(location, &self.pool, &self.control)?)
    }

    /// A new temporary directory for one image's work, removed when dropped.
    pub(crate) fn scratch(&self) -> Result<tempfile::TempDir, Error> {
        crate::transport::stale::sweep(&self.work_dir);
        tempfile::Builder::new()
            .prefix(&crate::transport::stale::prefix("work"))
            .tempdir_in(&self.work_dir)
            .map_err(|e| FileError::of("create a temporary directory in", &self.work_dir)(e).into())
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// What an error becomes once the job was cancelled: whatever stopped, it stopped
    /// because of the cancellation.
    pub(crate) fn settle<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Err(_) if self.control.cancel.is_cancelled() => Err(Error::Cancelled),
            other => other,
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pool", &self.pool)
            .field("work_dir", &self.work_dir)
            .field("limits", &self.limits)
            .finish()
    }
}
