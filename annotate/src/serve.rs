//! Running the server: bind, print the admin link on first start, serve until ctrl-c
//! (or SIGTERM), then finish in-flight requests before returning.
//!
//! Connections are served by hyper's HTTP/1 server directly rather than `axum::serve`,
//! for two bounds axum does not set: a header-read timeout ([`Limits::header_timeout`]),
//! so a client that sends half a request line cannot hold a connection (and a file
//! descriptor) forever, and a bounded shutdown ([`Limits::shutdown_grace`]), after which
//! connections still open are closed, so `systemctl stop` never ends in SIGKILL. Accept
//! errors (such as running out of file descriptors) are logged, not swallowed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

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
/// for in-flight requests, at most [`Limits::shutdown_grace`]. Tests and embedders use
/// this directly.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let limits = state.limits;
    let router = app(state);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // At the cap, accept nothing until a connection closes (the arm below).
            accepted = listener.accept(), if connections.len() < limits.max_connections.max(1) => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, router.clone(), limits, stopping.clone()));
                }
                Err(err) => {
                    // Typically EMFILE: say so, and give connections time to close.
                    tracing::error!(%err, open = connections.len(), "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Receivers may all be gone already (no connection open); nothing to tell then.
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_s = limits.shutdown_grace.as_secs_f64(),
            "shutdown grace ran out; closing the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One HTTP/1 connection, closed gracefully (after the request in flight) on shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::pin!(conn);
    let mut asked = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, %err, "connection closed with an error");
                }
                return;
            }
            _ = stopping.changed(), if !asked => {
                asked = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
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
