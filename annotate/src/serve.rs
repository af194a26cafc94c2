//! Running the server: bind, print the admin link on first start, serve until ctrl-c
//! (or SIGTERM), then finish in-flight requests before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::api::{app, AppState, Limits};
use crate::error::{AppError, Result};
use crate::store::Store;

/// Options for [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Where to listen; loopback by default so nothing is exposed unless asked.
    pub bind: SocketAddr,
    pub limits: Limits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            limits: Limits::default(),
        }
    }
}

/// Opens (or creates) the store at `db` and serves it until ctrl-c or SIGTERM.
/// On a database without an admin token, creates one and prints the admin link to
/// stderr (once: only its hash is kept).
pub async fn serve(db: &Path, options: ServeOptions) -> Result<()> {
    let store = Store::open(db)?;
    let listener = TcpListener::bind(options.bind)
        .await
        .map_err(|err| AppError::io(format!("binding {}", options.bind), err))?;
    let local = listener
        .local_addr()
        .map_err(|err| AppError::io("reading the bound address", err))?;
    let first_token = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<String>> {
            if store.has_admin_token()? {
                Ok(None)
            } else {
                store.create_admin_token().map(Some)
            }
        })
        .await
        .map_err(|err| AppError::Background(err.to_string()))??
    };
    match first_token {
        Some(token) => eprintln!(
            "admin link (shown once, keep it secret): http://{local}/admin#token={token}"
        ),
        None => eprintln!(
            "admin page: http://{local}/admin (use your admin link; `tiller annotate admin-token` makes a new one)"
        ),
    }
    if !local.ip().is_loopback() {
        // Plain HTTP: links and votes cross the network unencrypted.
        eprintln!("warning: listening on {local}, reachable from the network over plain HTTP; put it behind TLS");
    }
    tracing::info!(addr = %local, db = %db.display(), "annotation server listening");
    serve_on(
        listener,
        AppState {
            store,
            limits: options.limits,
        },
        shutdown_signal(),
    )
    .await
}

/// Serves `state` on an already bound listener until `shutdown` resolves, then waits
/// for in-flight requests. Tests and embedders use this directly.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|err| AppError::io("serving HTTP", err))
}

/// Resolves on ctrl-c, or on SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
