//! `woolly-run serve`: an OpenAI-compatible HTTP server with continuous batching.
//!
//! The HTTP side (axum on a small tokio runtime) parses and checks requests, tokenizes
//! prompts and turns the scheduler's events into JSON or server-sent events. The model
//! runs on the scheduler's own thread ([`woolly_model::batching`]): every step evaluates
//! one token of each generating request and chunks of new prompts in one forward pass.
//!
//! - The socket is bound first; `/health` answers 503 until the model is loaded, then 200.
//! - Request bodies over `--max-body` bytes (default 1 MiB) get 413.
//! - With `--api-key`, every `/v1/` route wants `Authorization: Bearer KEY` (401
//!   otherwise); `/health` and `/metrics` stay open, for probes.
//! - SIGINT or SIGTERM: stop accepting, end every in-flight request with a final chunk
//!   (finish reason `stop`), and exit 0.

mod error;
mod handlers;
mod metrics;
pub mod request;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use woolly_model::Model;
use woolly_model::batching::{self, SchedulerHandle, SchedulerOptions};
use woolly_model::chat::ChatTemplate;
use woolly_model::fetch;

use crate::commands::common::{self, RunArgs};
use metrics::Metrics;

/// Arguments of `woolly-run serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Address to listen on (loopback by default: say 0.0.0.0 to serve other machines).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the notice says which).
    #[arg(long, value_name = "N", default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on the /v1/ routes.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Requests served at once; each holds one KV-cache slot of --ctx positions.
    #[arg(long, value_name = "N", default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a slot; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_queue: usize,
    /// Most prompt tokens of one request evaluated per step (chunked prefill; at least
    /// 4, and a prompt's chunks before its last are whole groups of four).
    #[arg(long, value_name = "N", default_value_t = 128)]
    prefill_chunk: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body: usize,
    /// The model's name in the API (default: the file name without `.gguf`).
    #[arg(long, value_name = "NAME")]
    alias: Option<String>,
    /// Wait this long before loading (tests of the 503 that /health answers meanwhile).
    #[arg(long, value_name = "MS", hide = true, default_value_t = 0)]
    test_load_delay_ms: u64,
}

/// What exists once the model is loaded.
pub(crate) struct Ready {
    pub model: Arc<Model>,
    pub template: ChatTemplate,
    pub sched: SchedulerHandle,
}

/// State shared by the handlers.
pub(crate) struct AppState {
    /// The model's id in the API.
    pub model_id: String,
    pub api_key: Option<String>,
    pub max_body: usize,
    pub ready: OnceLock<Arc<Ready>>,
    pub metrics: Metrics,
    /// Set on SIGINT/SIGTERM: new requests get 503.
    pub stopping: AtomicBool,
    /// Source of response ids.
    pub next_id: AtomicU64,
    /// Unix time the server started (the model's `created`).
    pub started: u64,
}

/// Runs `woolly-run serve` until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    if args.prefill_chunk < 4 {
        bail!("--prefill-chunk must be at least 4");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("woolly-http")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(args))
}

fn model_id(args: &ServeArgs) -> String {
    if let Some(alias) = &args.alias {
        return alias.clone();
    }
    let path = match &args.run.model {
        Some(p) => p.clone(),
        None => fetch::cached_path(&fetch::SMOLLM2),
    };
    let name = Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    name.strip_suffix(".gguf").unwrap_or(&name).to_owned()
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    let state = Arc::new(AppState {
        model_id: model_id(&args),
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        max_body: args.max_body,
        ready: OnceLock::new(),
        metrics: Metrics::default(),
        stopping: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
        started: handlers::unix_now(),
    });
    eprintln!(
        "woolly-run serve: listening on http://{addr} (model {} loading; /health says when ready)",
        state.model_id
    );

    // Load on a thread of its own while the server answers /health with 503.
    let (load_tx, load_rx) = tokio::sync::oneshot::channel();
    let load_args = args.clone();
    std::thread::spawn(move || {
        let _ = load_tx.send(load(&load_args));
    });
    let scheduler_thread: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    {
        let state = Arc::clone(&state);
        let scheduler_thread = Arc::clone(&scheduler_thread);
        tokio::spawn(async move {
            match load_rx.await {
                Ok(Ok((ready, thread))) => {
                    *scheduler_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
                    let _ = state.ready.set(ready);
                    if state.stopping.load(Ordering::SeqCst)
                        && let Some(r) = state.ready.get()
                    {
                        r.sched.shutdown();
                    }
                    eprintln!("woolly-run serve: ready");
                }
                Ok(Err(e)) => {
                    let _ = fail_tx.send(e);
                }
                Err(_) => {
                    let _ = fail_tx.send(anyhow::anyhow!("loading the model panicked"));
                }
            }
        });
    }

    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let shutdown = {
        let state = Arc::clone(&state);
        let failure = Arc::clone(&failure);
        async move {
            tokio::select! {
                () = shutdown_signal() => {
                    eprintln!("woolly-run serve: shutting down: ending in-flight requests");
                }
                Ok(e) = fail_rx => {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            }
            state.stopping.store(true, Ordering::SeqCst);
            if let Some(r) = state.ready.get() {
                r.sched.shutdown();
            }
        }
    };
    axum::serve(listener, handlers::router(Arc::clone(&state)))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    if let Some(r) = state.ready.get() {
        r.sched.shutdown();
    }
    let thread = scheduler_thread
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(thread) = thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    eprintln!("woolly-run serve: stopped");
    Ok(())
}

/// Loads the model, its chat template and the scheduler; prints how memory is shared.
fn load(args: &ServeArgs) -> anyhow::Result<(Arc<Ready>, JoinHandle<()>)> {
    std::thread::sleep(std::time::Duration::from_millis(args.test_load_delay_ms));
    let t0 = Instant::now();
    let loaded = common::load(&args.run)?;
    let model = Arc::new(loaded.model);
    let session = common::session_options(&args.run, &model)?;
    let template = ChatTemplate::from_gguf(model.gguf(), model.tokenizer())?;
    let opts = SchedulerOptions {
        parallel: args.parallel,
        n_ctx: session.n_ctx,
        max_batch_tokens: session.n_batch.max(args.parallel),
        prefill_chunk: args.prefill_chunk,
        max_queue: args.max_queue,
        kv_type: session.kv_type,
        kv_limit_bytes: session.kv_limit_bytes,
    };
    let bytes = batching::cache_bytes(&model, &opts);
    eprintln!(
        "woolly-run serve: KV cache {} slots x {} positions ({:?}) = {:.1} MiB, allocated once; \
         each request holds one slot (prompt + completion <= {} tokens); {} more may queue",
        opts.parallel,
        opts.n_ctx,
        opts.kv_type,
        bytes as f64 / (1u64 << 20) as f64,
        opts.n_ctx,
        opts.max_queue
    );
    let (sched, thread) = batching::spawn(Arc::clone(&model), opts)?;
    eprintln!(
        "woolly-run serve: model loaded in {:.0} ms | isa {} | threads {} | batch {} tokens per step, prompt chunks of {}",
        t0.elapsed().as_secs_f64() * 1e3,
        model.isa().as_str(),
        loaded.threads,
        opts.max_batch_tokens,
        opts.prefill_chunk
    );
    Ok((
        Arc::new(Ready {
            model,
            template,
            sched,
        }),
        thread,
    ))
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
